"""A worker killed with SIGKILL mid-export: the export still completes, once, after a restart."""

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import select

from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import ACTIVE_STATUSES, Task, TaskStatus
from tests.conftest import ROOT

POSTS = 60_000


@pytest.fixture
def worker_env(live_env) -> dict[str, str]:
    return live_env  # the default heartbeat timeout and maintenance interval, as in production


@pytest.fixture
def worker_log(tmp_path):
    with (tmp_path / "worker.log").open("w+") as log:
        yield log
        log.seek(0)
        print(log.read())  # pytest shows it when the test fails


def start_worker(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1", "--threads", "2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=30)


def test_export_survives_a_worker_killed_mid_job(
    live_app, live_user, worker_env, worker_log, mailbox, recorded_events
):
    # Given a user with many posts and a running `dramatiq tasks`
    user_id, username = live_user("crash", posts=POSTS)
    first = start_worker(worker_env, worker_log)
    try:
        # When the export is under way, the whole worker is killed without warning
        with live_app.app_context():
            task_id = launch(export_posts, user_id).id
        recorded_events.wait_for(lambda m: m.data["task_id"] == task_id and m.data["done"] > 0)
        stop(first, signal.SIGKILL)
        finished_early = [
            m for m in recorded_events.of(f"user.{user_id}") if m.type == "task.finished"
        ]
        assert finished_early == [], "the export finished before the kill; the test proves nothing"

        # And a new worker starts
        second = start_worker(worker_env, worker_log)
        try:
            finished = recorded_events.finished(task_id, timeout=90)
        finally:
            stop(second, signal.SIGTERM)
    finally:
        stop(first, signal.SIGKILL)

    # Then the export completed on its second attempt, with exactly one email, nothing stuck
    assert finished.data["status"] == "succeeded"
    with live_app.app_context():
        task = db.session.get(Task, task_id)
        assert (task.status, task.attempts, task.done) == (TaskStatus.SUCCEEDED, 2, POSTS)
        active = select(Task).where(Task.user_id == user_id, Task.status.in_(ACTIVE_STATUSES))
        assert db.session.scalars(active).all() == []
    # (other tests' exports may be finished by this worker too; count only this user's mail)
    assert [m["To"] for m in mailbox].count(f"{username}@example.com") == 1
