"""TLS to the relay is verified: a relay whose certificate the site cannot verify (or whose name
it does not carry) receives nothing, and one that offers no STARTTLS never sees the
credentials; a relay trusted through ``MAIL_CA_FILE`` delivers. Real aiosmtpd relays on
certificates the test makes, through the mailer, a job, and gunicorn with a worker."""

import re

import pytest
import requests
from flask_mail import Message

from devkit.services import wait_until
from microblog import mailer
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from tests.support.relays import Certificates, Relay
from tests.support.servers import running_worker
from tests.support.web import live_session

CERTIFICATE = "The mail server's certificate could not be verified."


@pytest.fixture
def certificates(tmp_path) -> Certificates:
    return Certificates(tmp_path)


@pytest.fixture
def relay_app(make_app):
    """Build an app on this test's database whose mail goes to ``relay`` as ``settings`` say."""
    return lambda relay, **settings: make_app(MAIL_PORT=relay.port, **settings)


def send_one(app) -> None:
    with app.app_context():
        mailer.send(Message("Hello", recipients=["ops@example.com"], body="hi"),
                    purpose=mailer.Purpose.OPERATORS)  # fmt: skip


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_a_relay_with_an_untrusted_certificate_receives_nothing(relay_app, certificates, implicit):
    # Given a relay whose certificate comes from an authority the site does not trust
    tls = {"MAIL_USE_SSL": True} if implicit else {"MAIL_USE_TLS": True}
    with Relay(tls=certificates.server_context(), implicit_tls=implicit, auth=True) as relay:
        app = relay_app(relay, MAIL_USERNAME="microblog", MAIL_PASSWORD="secret", **tls)
        # When the site sends to it, the connection is refused as untrusted
        with pytest.raises(mailer.RelayUntrusted) as refused:
            send_one(app)
        # Then nothing was sent, credentials included
        assert refused.value.reason == CERTIFICATE
        assert relay.messages == [] and relay.auth_attempts == []


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_a_relay_trusted_through_the_ca_setting_delivers(relay_app, certificates, implicit):
    tls = {"MAIL_USE_SSL": True} if implicit else {"MAIL_USE_TLS": True}
    with Relay(tls=certificates.server_context(), implicit_tls=implicit, auth=True) as relay:
        app = relay_app(relay, MAIL_CA_FILE=str(certificates.ca_file), MAIL_USERNAME="microblog",
                       MAIL_PASSWORD="secret", **tls)  # fmt: skip
        send_one(app)
        assert [m["Subject"] for m in relay.messages] == ["Hello"]
        assert relay.auth_attempts  # logged in, over TLS


def test_a_certificate_for_another_name_is_refused(relay_app, tmp_path):
    # Given a trusted authority's certificate, but for another host than the relay's
    certificates = Certificates(tmp_path, host="mail.example.org")
    with Relay(tls=certificates.server_context()) as relay:
        app = relay_app(relay, MAIL_USE_TLS=True, MAIL_CA_FILE=str(certificates.ca_file))
        with pytest.raises(mailer.RelayUntrusted, match="mismatch|match"):
            send_one(app)
        assert relay.messages == []


def test_a_relay_without_starttls_never_sees_the_credentials(relay_app):
    # Given a relay that offers AUTH in clear but no STARTTLS, and a site that wants TLS
    with Relay(auth=True) as relay:
        app = relay_app(relay, MAIL_USE_TLS=True, MAIL_USERNAME="microblog", MAIL_PASSWORD="secret")
        with pytest.raises(mailer.RelayUntrusted) as refused:
            send_one(app)
        assert refused.value.reason == "The mail server does not offer a secure connection."
        assert relay.auth_attempts == [] and relay.messages == []


def test_an_export_s_last_attempt_names_the_certificate(relay_app, make_user, certificates):
    with Relay(tls=certificates.server_context()) as relay:
        app = relay_app(relay, MAIL_USE_TLS=True)
        with app.app_context():
            task_id = launch(export_posts, make_user("alice")).id
            export_posts(task_id)  # called directly: nothing retries it, it is the last attempt
            task = db.session.get(Task, task_id)
            assert (task.status, task.error) == ("failed", CERTIFICATE)
        assert relay.messages == []


def csrf_token(session: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', session.get(url, timeout=10).text)[1]


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_export_through_gunicorn_and_a_worker_reaches_only_a_verified_relay(
    gunicorn_server, live_env, live_user, live_app, certificates, tmp_path, trusted
):
    # Given alice signed in through gunicorn, and a worker whose relay speaks STARTTLS
    _, username = live_user("tls", posts=3)
    browser = live_session(gunicorn_server, username)
    with Relay(tls=certificates.server_context()) as relay:
        env = {**live_env, "MAIL_PORT": str(relay.port), "MAIL_USE_TLS": "1"}
        if trusted:
            env["MAIL_CA_FILE"] = str(certificates.ca_file)
        with running_worker(env, tmp_path / "worker.log"):
            # When she exports
            token = csrf_token(browser, gunicorn_server + "/")
            started = browser.post(gunicorn_server + "/exports", headers={
                "X-CSRFToken": token, "Accept": "application/json"}, timeout=10)  # fmt: skip
            assert started.status_code == 202, started.text
            task_id = started.json()["task_id"]

            def state() -> tuple:
                with live_app.app_context():
                    task = db.session.get(Task, task_id)
                    db.session.remove()
                    return task.status, task.error

            if trusted:  # Then a trusted relay delivers, and the export succeeds
                wait_until(lambda: state()[0] == "succeeded", 60, "the export to succeed")
                assert [m["To"] for m in relay.messages] == [f"{username}@example.com"]
            else:  # Then an untrusted one gets nothing, and the task says why it waits
                wait_until(
                    lambda: state()[1] == CERTIFICATE, 60, "the task to name the certificate"
                )
                assert state()[0] == "running" and relay.messages == []
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]
