"""Close tasks that no live message backs, so no task stays queued or running forever.

A task whose worker died keeps its message in the broker (unacked) until Dramatiq redelivers
it, so such a task is *not* reaped: it will run again. The reaper closes only the tasks whose
message is gone — lost with a flushed Redis, never sent because the web process died between
commit and send, or dead-lettered while the database was down — after a grace period.
It runs at worker start and then periodically in every worker process; it asks Redis about
each stale task's message directly, and its update is conditional, so several reapers at once
are harmless.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name
from flask import Flask, current_app
from sqlalchemy import delete, select

from microblog.database import discard_session
from microblog.extensions import db
from microblog.i18n import N_
from microblog.jobs import registry
from microblog.jobs.ending import end
from microblog.jobs.launch import send_kept
from microblog.jobs.models import ACTIVE_STATUSES, Task, TaskStatus
from microblog.jobs.worker.broker import redis_message_id
from microblog.jobs.worker.liveness import Periodic
from microblog.models import utcnow
from microblog.outages import is_outage

log = logging.getLogger(__name__)

LOST_REASON = N_("The job was lost before it could finish. Please start it again.")


def _queue_and_retries(name: str) -> tuple[str, int]:
    """Return a job type's queue and retries; a type this process does not know used the
    defaults (Dramatiq's)."""
    job_type = registry.find(name)
    return (job_type.queue_name, job_type.max_retries) if job_type else ("default", 20)


def live_message_ids(broker: RedisBroker, tasks: Iterable[Task]) -> set[str]:
    """Return which of these tasks' messages the broker still holds: queued, delayed or in flight.

    A message's id is its task's id. Both queues are read in one MULTI, so a retry that moves
    between the delay queue and the main queue is seen in one or the other, never in neither.
    """
    entries = [
        (task.id, f"{broker.key(queue)}.msgs", redis_message_id(task.id, retries, delayed))
        for task in tasks
        for queue_name, max_retries in [_queue_and_retries(task.name)]
        for retries in range(max_retries + 1)
        for queue, delayed in ((queue_name, False), (dq_name(queue_name), True))
    ]
    with broker.client.pipeline(transaction=True) as pipeline:
        for _, key, field in entries:
            pipeline.hexists(key, field)
        found = pipeline.execute()
    return {task_id for (task_id, _, _), exists in zip(entries, found, strict=True) if exists}


def reap(broker: RedisBroker, grace: timedelta) -> list[str]:
    """Fail the active tasks untouched for ``grace`` that no message backs; return their ids.

    Each ending repeats the staleness conditions, so a task that started, moved or finished
    since it was read is left alone.
    """
    cutoff = utcnow() - grace
    still_stale = Task.status.in_(ACTIVE_STATUSES) & (Task.updated_at < cutoff)
    stale = list(db.session.scalars(select(Task).where(still_stale)))
    if not stale:
        return []
    live = live_message_ids(broker, stale)
    reaped = []
    for task in stale:  # each ending logs the task's failure
        if task.id in live:
            continue
        if end(task.id, TaskStatus.FAILED, where=still_stale, error=LOST_REASON,
               failure_detail="the reaper found no live message for it"):  # fmt: skip
            reaped.append(task.id)
    return reaped


RETENTION_BATCH = 1_000  # rows deleted per transaction: short locks, bounded memory


def delete_old_tasks() -> int:
    """Delete ended tasks past their retention (archives go with them); return how many."""
    now, config = utcnow(), current_app.config
    expired = (
        Task.status.in_((TaskStatus.SUCCEEDED, TaskStatus.CANCELLED))
        & (Task.updated_at < now - timedelta(days=config["TASK_RETENTION_DAYS"]))
    ) | (
        (Task.status == TaskStatus.FAILED)
        & (Task.updated_at < now - timedelta(days=config["FAILED_TASK_RETENTION_DAYS"]))
    )  # an ended task's row no longer changes: updated_at is when it ended
    deleted = 0
    while ids := list(db.session.scalars(select(Task.id).where(expired).limit(RETENTION_BATCH))):
        db.session.execute(delete(Task).where(Task.id.in_(ids), expired))
        db.session.commit()
        deleted += len(ids)
    if deleted:
        log.info("deleted %d tasks past their retention", deleted)
    return deleted


def purge_dead_letters(broker: RedisBroker) -> int:
    """Drop dead-lettered messages whose task has ended or is gone: none can run again."""
    purged = 0
    for queue in broker.get_declared_queues():
        key = broker.key(xq_name(queue))
        entries = [entry.decode() for entry in broker.client.zrange(key, 0, 999)]  # oldest
        task_ids = {entry.split(".", 1)[0] for entry in entries}  # see redis_message_id
        if not task_ids:
            continue
        active = set(
            db.session.scalars(
                select(Task.id).where(Task.id.in_(task_ids), Task.status.in_(ACTIVE_STATUSES))
            )
        )
        dead = [entry for entry in entries if entry.split(".", 1)[0] not in active]
        if dead:
            pipeline = broker.client.pipeline()
            pipeline.zrem(key, *dead)
            pipeline.hdel(f"{key}.msgs", *dead)
            pipeline.execute()
            purged += len(dead)
    return purged


def run_pass(broker: RedisBroker) -> None:
    """One reaper pass: kept messages, lost tasks, old tasks and dead letters, then the app's
    chores."""
    grace = timedelta(seconds=current_app.config["JOBS_REAPER_GRACE"])
    send_kept(broker)
    reap(broker, grace)
    delete_old_tasks()
    purge_dead_letters(broker)
    for function in registry.chores():
        function()


class Reaper(Periodic):
    """Run a reaper pass when a worker boots and every ``JOBS_REAPER_INTERVAL`` seconds."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app.config["JOBS_REAPER_INTERVAL"])
        self.app = app

    def tick(self, broker: RedisBroker) -> None:
        with self.app.app_context():
            try:
                run_pass(broker)
            except Exception as error:
                if not is_outage(error):
                    log.exception("reaper pass failed; will try again in %ss", self.interval)
                    return
                discard_session()
                log.warning("reaper pass skipped, a dependency is away (%s: %s); will try "
                            "again in %ss", type(error).__name__, error, self.interval)  # fmt: skip
            finally:
                db.session.remove()
