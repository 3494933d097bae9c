"""The progress reporter: few updates whatever the size, always the first and the last."""

import io
import itertools
import time

import pytest

from microblog.auth.models import User
from microblog.exports.archive import write_archive
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.attempts import Attempt, AttemptSuperseded, start_attempt
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus, percentage
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.worker.runner import finish
from tests.support.data import insert_posts


class FakeClock:
    """A clock that moves forward by ``step`` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self._ticks = itertools.count()
        self.step = step

    def __call__(self) -> float:
        return next(self._ticks) * self.step


def running_task(app, user_id: int) -> tuple[Task, Attempt]:
    """Launch an export and start its first attempt, as a worker would."""
    with app.app_context():
        task_id = launch(export_posts, user_id).id
        attempt = start_attempt(task_id)
        task = db.session.get(Task, task_id)
        db.session.expunge(task)
        return task, attempt


def test_reporter_sends_a_bounded_number_of_updates_for_100000_items(
    app, make_user, recorded_events
):
    # Given a job of 100,000 items, each taking 1 ms on the reporter's clock (100 s in all)
    task, attempt = running_task(app, make_user("alice"))
    with app.app_context():
        reporter = ProgressReporter(task, attempt, interval=0.1, clock=FakeClock(step=0.001))

        # When every item is reported one by one
        reporter.start(100_000)
        for _ in range(100_000):
            reporter.advance()
        reporter.finish()

    # Then about ten updates a second went out (100 s → ~1,000), the first and last included
    assert 990 <= reporter.updates <= 1_002
    published = recorded_events.wait_for(lambda m: m.data.get("done") == 100_000)
    assert published.data["progress"] == 100
    with app.app_context():
        row = db.session.get(Task, task.id)
        assert (row.done, row.total, row.progress) == (100_000, 100_000, 100)


def test_reporter_always_sends_the_first_and_the_final_update(app, make_user):
    task, attempt = running_task(app, make_user("alice"))
    with app.app_context():
        reporter = ProgressReporter(task, attempt, interval=3600, clock=FakeClock(step=0.001))
        reporter.start(500)
        reporter.advance(499)
        reporter.advance(1)
        reporter.finish()
        reporter.finish()
    assert reporter.updates == 2


def test_the_export_reports_progress_by_the_clock_not_by_the_number_of_posts(app, make_user):
    # Given a user with 100,000 posts, read by the export 1,000 at a time
    alice = make_user("alice")
    task, attempt = running_task(app, alice)
    with app.app_context():
        insert_posts(alice, [f"post {i}" for i in range(100_000)])

        # When each chunk takes 50 ms on the reporter's clock (100 chunks: 5 s in all)
        clock = FakeClock(step=0.05)
        reporter = ProgressReporter(task, attempt, interval=0.1, clock=clock)
        write_archive(db.session.get(User, alice), io.BytesIO(), reporter)

    # Then about one update went out per 0.1 s of that clock, not one per post or chunk
    elapsed = clock()
    assert elapsed / 0.1 / 2 <= reporter.updates <= elapsed / 0.1 + 2, reporter.updates
    assert reporter.updates < 100


def test_a_real_export_publishes_ordered_events_that_end_with_one_final_event(
    app, make_user, recorded_events
):
    # Given a user with 20,000 posts
    alice = make_user("alice")
    with app.app_context():
        insert_posts(alice, [f"post {i}" for i in range(20_000)])
        task_id = launch(export_posts, alice).id

        # When the export runs (here, directly in this process)
        started = time.monotonic()
        export_posts(task_id)
        elapsed = time.monotonic() - started

    # Then progress never goes backwards, and exactly one final event closes the sequence
    finished = recorded_events.finished(task_id)
    events = [m for m in recorded_events.of(f"user.{alice}") if m.data["task_id"] == task_id]
    progress = [m.data["progress"] for m in events]
    assert progress == sorted(progress)
    assert [m.type for m in events].count("task.finished") == 1 and events[-1] is finished
    assert finished.data["status"] == "succeeded"
    # launch, running, the first and last updates, the final event, and one per 0.1 s between
    assert len(events) <= elapsed / 0.1 + 5, f"{len(events)} events in {elapsed:.2f}s"


def test_percentage_is_bounded_and_an_empty_job_is_complete():
    assert percentage(0, None) == 0
    assert percentage(0, 0) == 100
    assert percentage(1, 3) == 33
    assert percentage(7, 5) == 100


def test_a_finished_task_never_moves_again(app, app_context, make_user):
    # Given a task its attempt has finished
    task, attempt = running_task(app, make_user("alice"))
    finish(attempt)
    # Then no new attempt starts, and the old one can neither report nor finish again
    assert start_attempt(task.id) is None
    with pytest.raises(AttemptSuperseded):
        ProgressReporter(task, attempt).start(10)
    with pytest.raises(AttemptSuperseded):
        finish(attempt, error="late")
    row = db.session.get(Task, task.id)
    assert (row.status, row.error, row.attempts) == (TaskStatus.SUCCEEDED, None, 1)
