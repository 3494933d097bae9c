"""Workers killed or frozen at any point of an export: it still ends once, one email. (Cut off
from Redis: ``test_crash_redis.py``.)

Real `dramatiq tasks` processes on the test's Redis database, the session's SMTP catcher and
live database, with the production defaults (10 s heartbeat timeout, maintenance every
second). A worker started from ``tests.support.crash_worker`` stops itself at a named point of
the job, so the kill lands exactly there.
"""

import signal
import subprocess
import time

import psutil
import pytest

from devkit.services import wait_until
from microblog.exports.jobs import export_posts
from microblog.jobs.launch import launch
from microblog.jobs.models import TaskStatus
from tests.support.data import Tarpit, emails_to, final_row
from tests.support.servers import signal_group

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

POSTS = 5_000  # five chunks of reading: enough for a point in the middle


def has_stopped_itself(process: subprocess.Popen) -> bool:
    """Return whether one of the worker's processes sits stopped (by SIGSTOP)."""
    assert process.poll() is None, "the worker exited instead of stopping at its point"
    children = psutil.Process(process.pid).children(recursive=True)
    return any(child.status() == psutil.STATUS_STOPPED for child in children)


def stopped_in(process: subprocess.Popen, point: str) -> str:
    """Wait until a crash worker has stopped itself at ``point``; return the id of the task
    whose message it stopped in (its report, written just before it stopped)."""
    wait_until(lambda: process.report.exists() and has_stopped_itself(process), 60,
               f"the worker to reach {point}")  # fmt: skip
    reached, task_id = process.report.read_text().split()
    assert reached == point
    return task_id


@pytest.mark.parametrize(
    ("point", "attempts"),
    [
        ("before-start", 1),  # the killed attempt was never counted: nothing of it happened
        ("mid-read", 2),
        ("mid-store", 2),  # its uncommitted archive is gone; the next attempt builds it again
        ("during-data", 2),  # the relay has the email; the next attempt must not send it again
        ("after-send", 2),
    ],
)
def test_a_worker_killed_at_any_point_of_an_export_ends_it_once(
    live_app, live_user, workers, mailbox, recorded_events, point, attempts
):
    # Given a user with posts, and a worker that stops itself at one point of the export
    user_id, username = live_user("crash", posts=POSTS)
    first = workers(crash_at=point)
    with live_app.app_context():
        task_id = launch(export_posts, user_id).id
    assert stopped_in(first, point) == task_id, "the worker stopped in another task's message"

    # When it is killed there, and another worker is running
    signal_group(first, signal.SIGKILL)
    workers()

    # Then the export succeeds, with exactly one email, and no task is left active
    finished = recorded_events.finished(task_id, timeout=90)
    assert finished.data["status"] == "succeeded", finished.data
    task = final_row(live_app, task_id, user_id)
    got = (task.status, task.attempts, task.done)
    assert got == (TaskStatus.SUCCEEDED, attempts, POSTS), finished.data  # which attempt ended it
    assert emails_to(mailbox, username) == 1


def test_a_frozen_worker_that_lost_its_task_never_writes_to_it_again(
    live_app, live_user, workers, mailbox, recorded_events, worker_log
):
    # Given an export whose worker froze mid-read (as a host under SIGSTOP would)
    user_id, username = live_user("frozen", posts=POSTS)
    frozen = workers(crash_at="mid-read")
    with live_app.app_context():
        task_id = launch(export_posts, user_id).id
    assert stopped_in(frozen, "mid-read") == task_id, "it froze in another task's message"

    # When another worker takes the task over past the heartbeat timeout and finishes it
    workers()
    finished = recorded_events.finished(task_id, timeout=90)
    assert (finished.data["status"], finished.data["attempt"]) == ("succeeded", 2)

    # And the frozen worker wakes up
    signal_group(frozen, signal.SIGCONT)
    wait_until(
        lambda: worker_log.seek(0) == 0 and "attempt 1 was superseded" in worker_log.read(),
        30, "the woken attempt to notice it lost the task",
    )  # fmt: skip

    # Then it wrote nothing after the takeover: no event of attempt 1 once attempt 2 began,
    # no second email, the row as attempt 2 left it; and it said so without a traceback
    events = [m.data for m in recorded_events.of(f"user.{user_id}") if m.data["task_id"] == task_id]
    takeover = next(i for i, e in enumerate(events) if e["attempt"] == 2)
    assert [e["attempt"] for e in events[takeover:]] == [2] * len(events[takeover:])
    task = final_row(live_app, task_id, user_id)
    assert (task.status, task.attempts, task.done, task.progress) == ("succeeded", 2, POSTS, 100)
    assert emails_to(mailbox, username) == 1
    worker_log.seek(0)
    assert "Traceback" not in worker_log.read()


def test_a_worker_stopping_with_a_job_still_running_hands_it_to_another_at_once(
    live_app, live_user, live_env, workers, recorded_events, worker_log
):
    # Given an export stuck in its email (the relay never answers) on a worker that gives
    # running jobs one second when it stops, and another worker ready
    pit = Tarpit()
    try:
        relay = {"MAIL_PORT": str(pit.port)}
        user_id, _ = live_user("handback", posts=10)
        leaving = workers(extra_args=["--worker-shutdown-timeout", "1000"], **relay)
        with live_app.app_context():
            task_id = launch(export_posts, user_id).id
        recorded_events.wait_for(
            lambda m: m.data["task_id"] == task_id and m.data["progress"] == 100, timeout=60
        )
        workers(**relay)
        status = live_app.test_cli_runner()
        wait_until(lambda: "live workers: 2" in status.invoke(args=["jobs", "status"]).output,
                   60, "the second worker to be ready")  # fmt: skip
        # When the first is stopped and exits past its shutdown timeout
        # (to its main process, as a supervisor does: a SIGTERM to the whole group would
        # reach the worker process twice, and a second SIGTERM kills it at once)
        leaving.terminate()
        leaving.wait(timeout=30)
        exited = time.monotonic()
        # Then the other starts the job again at once, not after a heartbeat timeout (the way
        # a killed worker's job comes back)
        recorded_events.wait_for(
            lambda m: m.data["task_id"] == task_id and m.data["attempt"] == 2, timeout=30
        )
        heartbeat_timeout = live_app.config["JOBS_HEARTBEAT_TIMEOUT_MS"] / 1000
        assert time.monotonic() - exited < heartbeat_timeout / 2
        worker_log.seek(0)
        assert f"task {task_id} was still running at shutdown" in worker_log.read()
    finally:
        pit.close()
