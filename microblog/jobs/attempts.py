"""Attempts of a task, fenced: only a task's newest attempt may write to it.

Each delivery of a task's message starts an attempt with one conditional UPDATE that counts it
(``attempts + 1``) and marks the task running, before the job does anything else; the new
count is the attempt's fencing token. Every write the attempt makes afterwards (progress, the
job's results, the final state) is conditional on the row still holding that token while it
runs. A write that matches no row means the task has moved on without this attempt: the
broker redelivered the message while this worker was frozen or presumed dead, or the task
was closed. The write raises :class:`AttemptSuperseded` and the stale attempt stops quietly.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from microblog.extensions import db
from microblog.jobs.models import ACTIVE_STATUSES, Task, TaskStatus
from microblog.models import utcnow


class AttemptSuperseded(Exception):
    """A newer attempt owns the task, or it has ended: this attempt must stop writing."""


@dataclass(frozen=True)
class Attempt:
    task_id: str
    number: int  # the fencing token: the task's attempt count when this attempt started


def start_attempt(task_id: str) -> Attempt | None:
    """Count a new attempt of an active task and mark it running; None if it is not active.

    Commits. Counting is the attempt's first write, so a crash at any later point is counted
    and no message can be redelivered forever.
    """
    now = utcnow()
    number = db.session.scalar(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(ACTIVE_STATUSES))
        .values(status=TaskStatus.RUNNING, attempts=Task.attempts + 1, started_at=now,
                updated_at=now, done=0, progress=0, error=None, retry_at=None)
        .returning(Task.attempts)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    db.session.commit()
    return None if number is None else Attempt(task_id, number)


def owns(attempt: Attempt) -> ColumnElement[bool]:
    """Return the condition "this attempt still owns its running task"."""
    return (
        (Task.id == attempt.task_id)
        & (Task.attempts == attempt.number)
        & (Task.status == TaskStatus.RUNNING)
    )


def hold(executor: Session | Connection, attempt: Attempt, **values: Any) -> None:
    """Touch the task row (setting ``values`` too) if ``attempt`` still owns it, else raise.

    Inside a transaction this also locks the row until commit, so no newer attempt can start
    between this check and the commit of whatever else the transaction writes.

    :raise AttemptSuperseded: the task has a newer attempt or is no longer running.
    """
    statement = update(Task).where(owns(attempt)).values(updated_at=utcnow(), **values)
    result = executor.execute(statement.execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise AttemptSuperseded(f"attempt {attempt.number} of task {attempt.task_id}")
