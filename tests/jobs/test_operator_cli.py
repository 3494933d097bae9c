"""Operators' commands against the real database, Redis, SMTP and a real worker."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from devkit.pytest_plugin import in_process_worker
from devkit.services import free_port
from microblog.exports.jobs import export_posts
from microblog.extensions import db, mail
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.worker.reaper import LOST_REASON
from microblog.models import utcnow
from tests.support.data import make_task
from tests.support.web import JSON


def listed(runner, *args: str) -> set[str]:
    result = runner.invoke(args=["tasks", "list", *args])
    assert result.exit_code == 0, result.output
    return set(re.findall(r"^([0-9a-f]{32}) ", result.output, re.MULTILINE))


def test_tasks_list_filters_by_status_user_type_and_age(app, runner, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    failed = make_task(app, alice, "failed")
    old = make_task(app, bob, "succeeded", created_ago=timedelta(days=3))
    queued = make_task(app, bob, "queued")
    assert listed(runner) == {failed, old, queued}
    assert listed(runner, "--status", "failed") == {failed}
    assert listed(runner, "--status", "failed", "--status", "queued") == {failed, queued}
    assert listed(runner, "--user", "bob") == {old, queued}
    assert listed(runner, "--older-than", "2d") == {old}
    assert listed(runner, "--type", "export_posts", "--limit", "1") == {queued}
    assert listed(runner, "--type", "nothing_like_it") == set()
    table = runner.invoke(args=["tasks", "list", "--status", "failed"]).output
    assert "alice" in table and "export_posts" in table and "email could not be sent" in table


@pytest.mark.parametrize("args", [["--older-than", "3 weeks"], ["--status", "lost"],
                                  ["--user", "nobody"], ["--limit", "0"]])  # fmt: skip
def test_tasks_list_refuses_bad_filters_with_a_message(runner, args):
    result = runner.invoke(args=["tasks", "list", *args])
    assert result.exit_code != 0 and "Error" in result.output


def test_a_failure_keeps_its_traceback_for_operators_only(app, runner, client, auth):
    # Given an export whose email fails for good (nothing listens on the relay's port)
    alice = auth.signed_in("alice")
    app.config["MAIL_PORT"] = free_port()
    mail.init_app(app)
    with app.app_context():
        task_id = launch(export_posts, alice).id
        export_posts(task_id)  # the actor's function: its one and last attempt
        assert db.session.get(Task, task_id).status == TaskStatus.FAILED
    # Then `tasks show` has the exception and its traceback, and the user never sees them
    shown = runner.invoke(args=["tasks", "show", task_id])
    assert shown.exit_code == 0
    assert "failure detail (operators only):" in shown.output
    assert "Traceback (most recent call last)" in shown.output
    assert "ConnectionRefusedError" in shown.output
    as_user = client.get(f"/tasks/{task_id}", headers=JSON)
    assert "Traceback" not in as_user.get_data(as_text=True)
    assert "email could not be sent" in as_user.get_json()["error"]
    assert "Traceback" not in client.get("/").get_data(as_text=True)


def test_tasks_cancel_and_retry_from_the_shell(app, runner, make_user, recorded_events):
    alice = make_user("alice")
    task_id = make_task(app, alice)
    result = runner.invoke(args=["tasks", "cancel", task_id])
    assert result.exit_code == 0 and f"cancelled {task_id}" in result.output
    assert recorded_events.finished(task_id).data["status"] == "cancelled"
    again = runner.invoke(args=["tasks", "cancel", task_id])
    assert again.exit_code == 1 and "already ended" in again.output
    retried = runner.invoke(args=["tasks", "retry", task_id])
    assert retried.exit_code == 0, retried.output
    new_id = re.search(r"started ([0-9a-f]{32})", retried.output).group(1)
    with app.app_context():
        assert db.session.get(Task, new_id).status == TaskStatus.QUEUED
    assert runner.invoke(args=["tasks", "retry", new_id]).exit_code == 1  # active: refused
    assert runner.invoke(args=["tasks", "show", "0" * 32]).exit_code == 1


def test_tasks_reap_fails_a_lost_task_now(app, runner, make_user, redis_server):
    # Given a running task untouched for longer than the grace, whose message is gone
    alice = make_user("alice")
    task_id = make_task(app, alice, "running")
    with app.app_context():
        stale = utcnow() - timedelta(seconds=app.config["JOBS_REAPER_GRACE"] + 60)
        db.session.execute(update(Task).where(Task.id == task_id).values(updated_at=stale))
        db.session.commit()
        app.extensions["dramatiq"].flush_all()
    # When an operator runs a reaper pass
    result = runner.invoke(args=["tasks", "reap"])
    # Then the task failed with the lost-job reason
    assert result.exit_code == 0, result.output
    with app.app_context():
        task = db.session.get(Task, task_id)
        assert (task.status, task.error) == (TaskStatus.FAILED, LOST_REASON)


def test_jobs_status_shows_queues_and_fails_without_a_live_worker(app, runner, make_user):
    # Given an export waiting, and no worker
    make_task(app, make_user("alice"))
    idle = runner.invoke(args=["jobs", "status"])
    assert idle.exit_code == 1
    assert re.search(r"^default\s+1\s+0\s+0\s+\d+s$", idle.output, re.MULTILINE), idle.output
    assert "live workers: 0" in idle.output and "no worker is alive" in idle.output
    # When a worker runs
    with in_process_worker(app, threads=1):
        app.extensions["dramatiq"].join("default", timeout=30_000)
        busy = runner.invoke(args=["jobs", "status"])
    # Then it is listed with its last beat, and the check passes
    assert busy.exit_code == 0, busy.output
    assert "live workers: 1" in busy.output
    line = (
        r"^  \S+:\d+  last beat \d+\.\ds ago  runs: count_words, export_posts, "
        r"send_address_change_notice, send_confirmation, send_password_changed, "
        r"send_password_reset$"
    )  # job types, then errands
    assert re.search(line, busy.output, re.MULTILINE), busy.output
    # And a worker that stopped is gone from the list at once
    assert runner.invoke(args=["jobs", "status"]).exit_code == 1
