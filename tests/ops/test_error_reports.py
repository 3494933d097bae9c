"""Error reports carry no secret: an error forced on every form that takes one (sign-in,
registration, password change, reset link, confirmation link, change of address, a private
message) leaves no password, password hash, token or message body in the log, the ``ADMINS``
email or the event a real (local) Sentry ingest receives."""

import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from microblog import scrub
from tests.ops.test_error_mail import SentryIngest
from tests.support import ROOT

PASSWORD = "Tr0ub4dor-secret-pw"
NEW_PASSWORD = "c0rrect-new-secret-pw"
BODY = "the-private-body-no-one-reads"

SCRIPT = """
import os, sys, sentry_sdk
from sqlalchemy import select
from microblog import alerts, create_app
from microblog.auth import views as auth_views
from microblog.auth.models import User
from microblog.extensions import db
from microblog.messages import views as message_views
from microblog.recovery import tokens, views as recovery_views

dsn, redis_url, database_url, mail_port = sys.argv[1:]
# The secrets come by the environment: Sentry reports a process's arguments as they are
password, new_password, body = (os.environ[name] for name in ("PW", "NEW_PW", "BODY"))
app = create_app({"SENTRY_DSN": dsn, "REDIS_URL": redis_url, "MAIL_PORT": int(mail_port),
                  "SQLALCHEMY_DATABASE_URI": database_url, "ADMINS": ["ops@example.com"],
                  "WTF_CSRF_ENABLED": False, "THROTTLE_ENABLED": False,
                  "PROPAGATE_EXCEPTIONS": False})
with app.app_context():
    for name in ("alice", "bob"):
        user = User(username=name, email=f"{name}@example.com")
        user.set_password(password)
        db.session.add(user)
    db.session.commit()
    alice = db.session.scalar(select(User).filter_by(username="alice"))
    alice.pending_email = "alice@new.example"
    db.session.commit()
    reset = tokens.make_token(alice)
    confirm = tokens.make_confirmation_token(alice, "alice@new.example")
    print("SECRET", alice.password_hash)
    print("SECRET", reset)
    print("SECRET", confirm)


def fault(module, name, number):
    # A distinct error type per form: each is its own error, emailed once
    forced = type(f"Forced{number}", (RuntimeError,), {})
    def fail(*args, **kwargs):
        raise forced("forced for the test")
    setattr(module, name, fail)


def post(client, path, data):
    status = client.post(path, data=data).status_code
    print("STATUS", path.split("/")[2], status)


signed_in = app.test_client()
signed_in.post("/auth/login", data={"username": "alice", "password": password})
fault(auth_views, "close_all_sign_ins", 1)
post(signed_in, "/auth/account", {"current_password": password, "password": new_password,
                                  "password2": new_password})
fault(recovery_views, "confirm_address", 5)
post(app.test_client(), f"/auth/confirm/{confirm}", {})
fault(auth_views, "announce_address_change", 2)
post(signed_in, "/auth/email", {"address-email": "alice@other.example",
                                "address-current_password": password})
fault(message_views, "announce_unread", 3)
post(signed_in, "/send_message/bob", {"message": body})
fault(recovery_views, "close_all_sign_ins", 4)
post(app.test_client(), f"/auth/reset_password/{reset}", {"password": new_password,
                                                           "password2": new_password})
fault(auth_views, "announce_confirmation_wanted", 6)
post(app.test_client(), "/auth/register", {"username": "carol", "email": "carol@example.com",
                                           "password": password, "password2": password})
fault(auth_views, "sign_in", 7)
post(app.test_client(), "/auth/login", {"username": "bob", "password": password})
alerts.uninstall()  # mails what is queued
sentry_sdk.flush(10)
"""


@pytest.fixture
def sentry_ingest():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryIngest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SentryIngest.received.clear()
    yield f"http://public@127.0.0.1:{server.server_port}/1"
    server.shutdown()
    server.server_close()


def test_no_secret_reaches_the_log_the_admins_mail_or_sentry(
    database_url, redis_server, smtp_server, sentry_ingest
):
    # When every form that takes a secret fails (in a process of its own: Sentry's SDK is
    # global to a process, and the log is what it writes)
    smtp_server.messages.clear()
    env = {**os.environ, "PW": PASSWORD, "NEW_PW": NEW_PASSWORD, "BODY": BODY}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, sentry_ingest, redis_server.url, database_url,
         str(smtp_server.port)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    secrets = [PASSWORD, NEW_PASSWORD, BODY] + [
        line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("SECRET ")
    ]
    assert len(secrets) == 6
    # Then each failed as a 500, and was reported: logged, mailed, sent to Sentry
    assert result.stdout.count("STATUS") == 7 and all(
        line.endswith(" 500") for line in result.stdout.splitlines() if line.startswith("STATUS")
    ), result.stdout
    log = result.stderr
    mails = [m.as_string() for m in smtp_server.messages if m["To"] == "ops@example.com"]
    events = [body.decode(errors="replace") for body in SentryIngest.received]
    assert log.count("Unhandled error on POST") == 7, log[-3000:]
    assert "Unhandled error on POST /auth/reset_password/[token]" in log
    assert len(mails) == 7 and len(events) >= 7
    # And none of them holds a password, a hash, a token or the message's body
    for where, texts in {"log": [log], "mail": mails, "sentry": events}.items():
        for text in texts:
            leaked = [secret[:12] for secret in secrets if secret in text]
            assert leaked == [], f"{where} holds {leaked}"


SQL = "[SQL: UPDATE user SET x=%(x)s]\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("GET /auth/reset_password/a.B-1 HTTP/1.1", "GET /auth/reset_password/[token] HTTP/1.1"),
        ("POST /auth/confirm/x.y.z?next=/", "POST /auth/confirm/[token]?next=/"),
        ("hash scrypt:32768:8:1$salt$0123abcd here", "hash [password hash] here"),
        ("{'current_password': 'hunter2', 'n': 1}", "{'current_password': [hidden], 'n': 1}"),
        ("csrf_token=abc&x=1", "csrf_token=[hidden]&x=1"),
        (SQL + "[parameters: {'x': 'secret'}]", SQL + "[parameters: hidden]"),
        ("nothing to hide in /user/alice", "nothing to hide in /user/alice"),
    ],
)
def test_the_scrubber_hides_what_it_promises(text, expected):
    assert scrub.scrub(text) == expected


def test_a_sentry_event_loses_its_body_cookies_and_secret_fields():
    event = {
        "request": {"url": "http://x/auth/reset_password/tok", "data": {"password": "p"},
                    "cookies": {"session": "s"}, "headers": {"Cookie": "s", "Accept": "*/*"}},
        "extra": {"api_key": "k", "count": 3, "nested": ["GET /auth/confirm/t"]},
    }  # fmt: skip
    assert scrub.scrub_event(event) == {
        "request": {"url": "http://x/auth/reset_password/[token]", "headers": {"Accept": "*/*"}},
        "extra": {"api_key": "[hidden]", "count": 3, "nested": ["GET /auth/confirm/[token]"]},
    }
