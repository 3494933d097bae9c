"""Jobs end, once: timeouts, fenced attempts, the email sent at most once, the reaper's race.

Each test drives the real job code against the session's Redis, SMTP catcher and database;
the crash suite with real `dramatiq tasks` processes is in test_crash.py.
"""

import logging
import time

import pytest
import redis
from dramatiq import Message
from sqlalchemy import func, select, update

from devkit.services import free_port
from microblog.auth.models import User
from microblog.config import defaults
from microblog.exports import email as export_email
from microblog.exports.jobs import build_and_store, export_posts
from microblog.exports.models import Archive
from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.attempts import Attempt, AttemptSuperseded, start_attempt
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.worker import reaper
from microblog.jobs.worker.runner import CRASHED_TOO_OFTEN, JobError, job
from microblog.models import utcnow
from tests.support.data import insert_posts, task_row

GRACE = reaper.timedelta(minutes=2)


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """This module declares job types of its own: the app loads it with the product's."""
    return {**app_config, "JOB_MODULES": [*defaults("")["JOB_MODULES"], __name__]}


@job(description="Waiting for ever", max_retries=0, time_limit=500)
def wait_for_ever(task: Task, attempt: Attempt, progress: ProgressReporter) -> None:
    progress.start(1)
    while True:
        time.sleep(0.05)  # Python code, so Dramatiq's time limit can interrupt it


@job(description="Refusing", max_retries=3)
def refuse(task: Task, attempt: Attempt, progress: ProgressReporter) -> None:
    raise JobError("There is nothing to do.")


def emails_to(mailbox: list, username: str) -> int:
    return [m["To"] for m in mailbox].count(f"{username}@example.com")


def test_a_relay_that_never_answers_fails_the_export_within_the_mail_timeout(
    app, make_user, tarpit, mailbox
):
    # Given a relay that accepts connections and never replies, and a 1 s mail timeout
    app.config.update(MAIL_PORT=tarpit.port, MAIL_TIMEOUT=1)
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        # When the export's last attempt runs
        started = time.monotonic()
        export_posts(task_id)  # called directly: this attempt is the last
        elapsed = time.monotonic() - started
        # Then it ended failed, with a reason, in about the timeout, and the slot is free
        task = task_row(app, task_id)
        assert task.status == TaskStatus.FAILED
        assert "email could not be sent" in task.error
        assert elapsed < 10, elapsed
        assert launch(export_posts, alice).status == TaskStatus.QUEUED
    assert mailbox == []


def test_a_job_past_its_time_limit_ends_failed_and_frees_the_slot(
    app, app_context, make_user, worker
):
    # `dramatiq tasks` starts the time-limit watcher when its process boots; so does this test.
    app.extensions["dramatiq"].emit_after("process_boot")
    alice = make_user("alice")
    task_id = launch(wait_for_ever, alice).id

    def ended() -> bool:
        return task_row(app, task_id).status == TaskStatus.FAILED

    deadline = time.monotonic() + 10
    while not ended():
        assert time.monotonic() < deadline, "the time limit did not end the job"
        time.sleep(0.1)
    assert task_row(app, task_id).error.startswith("The job took too long")
    assert task_row(app, task_id).attempts == 1  # not retried: it would run out of time again
    assert launch(wait_for_ever, alice).status == TaskStatus.QUEUED  # the slot is free


def test_a_job_error_fails_the_task_at_once_with_its_message(app, make_user, recorded_events):
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(refuse, alice).id
        refuse(task_id)
        task = task_row(app, task_id)
        assert (task.status, task.error, task.attempts) == (
            TaskStatus.FAILED, "There is nothing to do.", 1
        )  # fmt: skip
    assert recorded_events.finished(task_id).data["error"] == "There is nothing to do."


def test_a_superseded_attempt_writes_nothing_and_sends_nothing(
    app, app_context, make_user, mailbox
):
    # Given an export whose message is redelivered while its first attempt builds the archive
    alice = make_user("alice")
    insert_posts(alice, [f"post {i}" for i in range(50)])
    task_id = launch(export_posts, alice).id
    first = start_attempt(task_id)
    task, user = db.session.get(Task, task_id), db.session.get(User, alice)
    attempts = {}

    class RedeliveredWhileBuilding(ProgressReporter):
        def finish(self) -> None:
            super().finish()
            attempts["second"] = start_attempt(task_id)

    # When the first attempt goes on to store its archive, the store is refused
    with pytest.raises(AttemptSuperseded):
        build_and_store(task, user, first, RedeliveredWhileBuilding(task, first))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Archive)) == 0
    # And so is any progress it reports
    with pytest.raises(AttemptSuperseded):
        ProgressReporter(task, first).start(50)

    # And once the second attempt stored the archive, the first cannot email it
    second = attempts["second"]
    archive = build_and_store(task, user, second, ProgressReporter(task, second))
    with pytest.raises(AttemptSuperseded):
        export_email.deliver_export_email(user, archive, first)
    assert mailbox == []
    export_email.deliver_export_email(user, archive, second)
    assert emails_to(mailbox, "alice") == 1
    assert task_row(app, task_id).attempts == 2


def test_a_redelivery_after_the_email_went_out_does_not_send_it_again(app, make_user, mailbox):
    # Given an export that sent its email, then died before recording success
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        export_posts(task_id)
        assert emails_to(mailbox, "alice") == 1
        db.session.execute(update(Task).where(Task.id == task_id).values(status="running"))
        db.session.commit()
        # When its message is delivered again
        export_posts(task_id)
        # Then it succeeds on the stored archive, without a second email
        assert (task_row(app, task_id).status, task_row(app, task_id).attempts) == ("succeeded", 2)
    assert emails_to(mailbox, "alice") == 1


def test_an_email_that_may_have_reached_the_relay_is_not_sent_again(
    app, make_user, mailbox, caplog
):
    # Given an export that died while the relay was answering its email (outcome unknown)
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        attempt = start_attempt(task_id)
        task, user = db.session.get(Task, task_id), db.session.get(User, alice)
        build_and_store(task, user, attempt, ProgressReporter(task, attempt))
        export_email.mark(task_id, attempt, email_sending_at=utcnow())
        # When the message is redelivered
        with caplog.at_level(logging.WARNING, logger="microblog"):
            export_posts(task_id)
        # Then the task succeeds (the link works), no email is sent, and the log says why
        assert task_row(app, task_id).status == TaskStatus.SUCCEEDED
    assert mailbox == []
    assert "may have reached the relay" in caplog.text


def test_a_message_that_crashed_its_worker_too_often_fails_the_task(app, make_user, mailbox):
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        # As many attempts started as retries and crashes allow, none finished: each one
        # killed its worker
        allowed = export_posts.options["max_retries"] + 1 + 2  # the default crash allowance
        db.session.execute(update(Task).where(Task.id == task_id).values(attempts=allowed))
        db.session.commit()
        export_posts(task_id)
        task = task_row(app, task_id)
        assert (task.status, task.error, task.attempts) == (
            "failed",
            CRASHED_TOO_OFTEN,
            allowed + 1,
        )
    assert mailbox == []


def test_an_expected_retry_logs_one_warning_without_a_traceback(
    app, make_user, worker, recorded_events, caplog
):
    # Given a mail relay that is down
    app.config["MAIL_PORT"] = free_port()
    alice = make_user("alice")
    with caplog.at_level(logging.INFO), app.app_context():
        task_id = launch(export_posts, alice).id
        # When the first attempt fails and the second begins
        recorded_events.wait_for(
            lambda m: m.data["task_id"] == task_id and m.data.get("attempt") == 2, timeout=30
        )
    # Then each failed attempt is one WARNING naming the task and attempt, and no traceback
    retries = [
        r for r in caplog.records if task_id in r.getMessage() and "retried" in r.getMessage()
    ]
    first = [r for r in retries if "attempt 1 failed" in r.getMessage()]
    assert len(first) == 1
    assert {r.levelno for r in retries} == {logging.WARNING}
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_a_task_that_finishes_during_a_reaper_pass_is_left_alone(
    app, make_user, recorded_events, monkeypatch
):
    # Given a stale task whose message is gone (Redis flushed), read by a reaper pass
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        broker = app.extensions["dramatiq"]
        broker.client.flushdb()
        db.session.execute(
            update(Task).where(Task.id == task_id).values(updated_at=utcnow() - GRACE * 2)
        )
        db.session.commit()

        # When the task finishes while the reaper asks Redis about its message
        def finishing_meanwhile(broker, tasks):
            with db.engine.begin() as connection:
                connection.execute(
                    update(Task).where(Task.id == task_id).values(status="succeeded")
                )
            return real_live_message_ids(broker, tasks)

        real_live_message_ids = reaper.live_message_ids
        monkeypatch.setattr(reaper, "live_message_ids", finishing_meanwhile)
        reaped = reaper.reap(broker, GRACE)

        # Then the reaper leaves it succeeded, and announces nothing
        assert reaped == []
        assert task_row(app, task_id).status == TaskStatus.SUCCEEDED
    assert [m for m in recorded_events.of(f"user.{alice}") if m.type == "task.finished"] == []


def test_the_reaper_sees_a_message_waiting_in_the_delay_queue(app, app_context, make_user):
    # Given a stale task whose message waits for its retry in the delay queue
    alice = make_user("alice")
    task_id = launch(export_posts, alice).id
    broker = app.extensions["dramatiq"]
    broker.client.flushdb()
    retry = Message(queue_name="default", actor_name="export_posts", args=(task_id,),
                    kwargs={}, options={"retries": 1}, message_id=task_id)  # fmt: skip
    broker.enqueue(retry, delay=60_000)
    db.session.execute(
        update(Task).where(Task.id == task_id).values(updated_at=utcnow() - GRACE * 2)
    )
    db.session.commit()
    # Then the reaper leaves it alone
    assert reaper.reap(broker, GRACE) == []
    assert task_row(app, task_id).status == TaskStatus.QUEUED


def test_an_export_whose_events_cannot_be_published_still_succeeds(
    app, make_user, mailbox, caplog, monkeypatch
):
    # Given an export launched, then Redis unreachable for its events (for good: its end is
    # not retried in the background)
    monkeypatch.setattr(events, "FINAL_EVENT_RETRY_SECONDS", 0)
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        app.extensions["microblog.redis"] = redis.Redis.from_url(
            f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1, socket_timeout=1
        )
        # When it runs
        with caplog.at_level(logging.WARNING, logger="microblog"):
            export_posts(task_id)
        # Then every event was logged as lost, and the task row and the email say it worked
        assert task_row(app, task_id).status == TaskStatus.SUCCEEDED
    assert "could not publish task.finished" in caplog.text
    assert emails_to(mailbox, "alice") == 1
