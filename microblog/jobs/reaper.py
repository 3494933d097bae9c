"""Close tasks that no live message backs, so no task stays queued or running forever.

A task whose worker died keeps its message in the broker (unacked) until Dramatiq redelivers
it, so such a task is *not* reaped: it will run again. The reaper closes only the tasks whose
message is gone — lost with a flushed Redis, never sent because the web process died between
commit and send, or dead-lettered while the database was down — after a grace period.
It runs at worker start and then periodically in every worker process; its updates are
conditional, so several reapers at once are harmless.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.middleware import Middleware
from flask import Flask, current_app
from sqlalchemy import select

from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.broker import queue_of
from microblog.jobs.models import ACTIVE_STATUSES, Task
from microblog.jobs.progress import announce
from microblog.models import utcnow

log = logging.getLogger(__name__)

LOST_REASON = "The job was lost before it could finish. Please start it again."
_chores: list[Callable[[], object]] = []


def chore(function: Callable[[], object]) -> Callable[[], object]:
    """Also run ``function`` on every reaper pass (e.g. deleting expired files)."""
    _chores.append(function)
    return function


def live_message_ids(broker: RedisBroker, queue_names: Iterable[str]) -> set[str]:
    """Return the ids of messages the broker still holds: queued, delayed or in flight."""
    found: set[str] = set()
    for queue in queue_names:
        for name in (queue, dq_name(queue)):
            key = f"{broker.namespace}:{name}.msgs"
            for _, data in broker.client.hscan_iter(key):
                found.add(dramatiq.Message.decode(data).message_id)
    return found


def reap(broker: RedisBroker, grace: timedelta) -> list[str]:
    """Fail the active tasks untouched for ``grace`` that no message backs; return their ids."""
    stale = list(
        db.session.scalars(
            select(Task).where(Task.status.in_(ACTIVE_STATUSES), Task.updated_at < utcnow() - grace)
        )
    )
    if not stale:
        return []
    live = live_message_ids(broker, {queue_of(task.name) for task in stale})
    lost = [task for task in stale if task.id not in live]
    for task in lost:
        task.fail(LOST_REASON)
    db.session.commit()
    for task in lost:
        log.warning("reaped task %s (%s): no live message", task.id, task.name)
        announce(task.user_id, events.FINISHED, events.task_data(task))
    return [task.id for task in lost]


def run_pass(broker: RedisBroker) -> None:
    """One reaper pass: lost tasks, then every registered chore."""
    grace = timedelta(seconds=current_app.config["JOBS_REAPER_GRACE"])
    reap(broker, grace)
    for function in _chores:
        function()


class Reaper(Middleware):
    """Run a reaper pass when a worker boots and every ``JOBS_REAPER_INTERVAL`` seconds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker) -> None:
        self._stop.clear()
        threading.Thread(target=self._loop, args=(broker,), name="reaper", daemon=True).start()

    def before_worker_shutdown(self, broker, worker) -> None:
        self._stop.set()

    def _loop(self, broker: RedisBroker) -> None:
        interval = self.app.config["JOBS_REAPER_INTERVAL"]
        while True:
            with self.app.app_context():
                try:
                    run_pass(broker)
                except Exception:
                    log.exception("reaper pass failed; will try again in %ss", interval)
                finally:
                    db.session.remove()
            if self._stop.wait(interval):
                return
