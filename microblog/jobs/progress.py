"""Turn "done of total" into a few durable, published progress updates a second."""

import time
from collections.abc import Callable

from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.attempts import Attempt, hold
from microblog.jobs.models import Task, TaskStatus, percentage


class ProgressReporter:
    """Record and announce a task's progress at most once per ``interval`` seconds.

    Call :meth:`start` with the total, :meth:`advance` as work gets done (as often as you
    like: it only compares clocks), and :meth:`finish` at the end. The first and the final
    update always go out. Each update is its own short transaction on the task row, on its
    own connection, so it never commits the job's session, plus one published event. It is
    fenced by ``attempt``: an attempt that lost its task raises ``AttemptSuperseded`` here.
    """

    def __init__(
        self,
        task: Task,
        attempt: Attempt,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task = task
        self.attempt = attempt
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.total: int | None = None
        self.updates = 0
        self._next_at = 0.0
        self._reported: tuple[int, int | None] | None = None

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self._report()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.clock() >= self._next_at:
            self._report()

    def finish(self) -> None:
        if self._reported != (self.done, self.total):
            self._report()

    def _report(self) -> None:
        self._next_at = self.clock() + self.interval
        self._reported = (self.done, self.total)
        self.updates += 1
        progress = percentage(self.done, self.total)
        with db.engine.begin() as connection:
            hold(connection, self.attempt, done=self.done, total=self.total, progress=progress)
        events.announce(
            events.PROGRESS,
            self.task,
            status=str(TaskStatus.RUNNING),
            done=self.done,
            total=self.total,
            progress=progress,
        )
