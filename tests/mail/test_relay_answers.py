"""Mail counts as sent only when the relay accepts its data: a real relay that answers "try
later" (451) is tried again and delivers one email; one that answers "no" (554), to the data
or to the DATA command, fails the export with an honest reason and costs an errand nothing more
than a WARNING; with the broker away, a notice is kept and sent once it is back."""

import logging

import pytest
from sqlalchemy import func, select

from devkit.pytest_plugin import in_process_worker
from devkit.services import free_port, wait_until
from microblog import create_app
from microblog.exports.email import EMAIL_REJECTED
from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import KeptMessage, Task
from microblog.recovery.mail import send_password_reset
from tests.support.data import insert_posts
from tests.support.relays import Relay
from tests.support.servers import wait_until_idle
from tests.support.web import PASSWORD

TRY_LATER = "451 4.3.0 Try again later"
REJECTED = "554 5.7.1 Message rejected"
NEW_PASSWORD = "brand-new-horse-8"
CHANGED = "Your microblog password was changed"


@pytest.fixture
def relay():
    with Relay() as running:
        yield running


@pytest.fixture
def app_config(app_config, relay):
    return {**app_config, "MAIL_PORT": relay.port, "THROTTLE_ENABLED": False}


def export(app, user_id: int, recorded_events) -> Task:
    with app.app_context():
        insert_posts(user_id, ["one", "two"])
        task_id = launch(export_posts, user_id).id
    recorded_events.finished(task_id)
    with app.app_context():
        task = db.session.get(Task, task_id)
        db.session.expunge(task)
        return task


def archive_marks(app, task_id: str) -> tuple:
    with app.app_context():
        archive = db.session.get(Archive, task_id)
        return archive.email_sending_at, archive.emailed_at


@pytest.mark.parametrize(
    "script", [{"answers": [TRY_LATER]}, {"command_answers": [TRY_LATER]}], ids=["data", "command"]
)
def test_an_export_refused_for_now_is_emailed_once_on_its_retry(
    app, make_user, relay, worker, recorded_events, script
):
    # Given a relay that answers "try later" once
    relay.answers = list(script.get("answers", []))  # a copy: the parameter is shared
    relay.command_answers = list(script.get("command_answers", []))
    # When alice exports
    task = export(app, make_user("alice"), recorded_events)
    # Then the export succeeded on its second attempt with exactly one email
    assert (task.status, task.attempts) == ("succeeded", 2), task.error
    wait_until_idle(app.extensions["dramatiq"])
    assert [m["To"] for m in relay.messages] == ["alice@example.com"]
    assert relay.data_commands == 2
    assert archive_marks(app, task.id)[1] is not None


@pytest.mark.parametrize(
    "script", [{"answers": [REJECTED]}, {"command_answers": [REJECTED]}], ids=["data", "command"]
)
def test_an_export_the_relay_rejects_fails_and_counts_as_not_sent(
    app, make_user, relay, worker, recorded_events, script, caplog
):
    # Given a relay that rejects the message for good
    relay.answers = list(script.get("answers", []))  # a copy: the parameter is shared
    relay.command_answers = list(script.get("command_answers", []))
    # When alice exports
    with caplog.at_level(logging.WARNING, logger="microblog"):
        task = export(app, make_user("alice"), recorded_events)
    # Then the task failed at once, saying the mail server refused the email
    assert (task.status, task.attempts, task.error) == ("failed", 1, EMAIL_REJECTED)
    assert "554" in task.failure_detail  # operators see the relay's answer
    # And nothing counts as sent, and nothing was delivered
    assert archive_marks(app, task.id) == (None, None)
    assert relay.messages == []
    assert "refused the email to an address at example.com for good" in caplog.text


@pytest.mark.parametrize("answer, delivered", [(TRY_LATER, 1), (REJECTED, 0)])
def test_a_reset_link_refused_for_now_is_sent_once_and_rejected_only_warns(
    app, make_user, relay, worker, caplog, answer, delivered
):
    # Given a relay that refuses the next message's data
    make_user("alice")
    relay.answers = [answer]
    # When a reset link is asked for
    with caplog.at_level(logging.WARNING, logger="microblog"):
        send_password_reset.send("alice@example.com")
        wait_until(lambda: relay.data_commands >= 1 + delivered, 30, "the relay to be tried")
        wait_until_idle(app.extensions["dramatiq"])
    # Then a refusal for now is tried again and delivers once; a rejection is given up, warned
    assert len(relay.messages) == delivered
    assert relay.data_commands == 1 + delivered
    if not delivered:
        assert "refused it for good, for an address at example.com" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_notice_refused_for_now_arrives_once(app, client, auth, relay, worker):
    # Given alice signed in, and a relay that answers the next message "try later"
    auth.signed_in("alice")
    relay.answers = [TRY_LATER]
    # When she changes her password
    changed = client.post("/auth/account", data={"current_password": PASSWORD,
                          "password": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
    assert changed.status_code == 302
    # Then the notice arrives once, on the second try
    wait_until(lambda: relay.messages, 30, "the password-changed notice")
    wait_until_idle(app.extensions["dramatiq"])
    assert [m["Subject"] for m in relay.messages] == [CHANGED]
    assert relay.data_commands == 2


def test_a_notice_is_kept_while_the_broker_is_away_and_sent_once_it_is_back(
    app, app_config, make_user, relay
):
    # Given alice, and a web app whose Redis is away
    make_user("alice")
    away = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        client = away.test_client()
        signed_in = client.post("/auth/login", data={"username": "alice", "password": PASSWORD})
        assert signed_in.status_code == 302
        # When she changes her password
        changed = client.post("/auth/account", data={"current_password": PASSWORD,
                              "password": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
        assert changed.status_code == 302
    finally:
        with away.app_context():
            db.engine.dispose()
    # Then the notice is kept in the database
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KeptMessage)) == 1
    # When the broker is back and a worker's pass sends what was kept
    with app.app_context(), in_process_worker(app):  # its first reaper pass sends them
        wait_until(lambda: relay.messages, 30, "the kept notice")
        wait_until_idle(app.extensions["dramatiq"])
        # Then it arrives once, and nothing is kept any more
        assert [m["Subject"] for m in relay.messages] == [CHANGED]
        assert db.session.scalar(select(func.count()).select_from(KeptMessage)) == 0
