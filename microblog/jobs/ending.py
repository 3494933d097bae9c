"""The one way a task ends: a conditional write of its final state, a commit, one announcement.

Success, failure, a cancel, the time limit, an unknown job type, a lost message found by the
reaper, a job queue that could not take the message: every path goes through :func:`end`.
The UPDATE's condition is what makes ending safe to race: the task must still be active
(or, for an attempt, still owned by it), so of two enders exactly one wins, and only the
winner counts the task and tells its user. Final states never move.
"""

import logging
from typing import Any

from sqlalchemy import ColumnElement, update

from microblog import metrics
from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.attempts import Attempt, AttemptSuperseded, owns
from microblog.jobs.models import ACTIVE_STATUSES, FINAL_STATUSES, Task, TaskStatus
from microblog.models import utcnow

log = logging.getLogger(__name__)


def end(
    task_id: str,
    status: TaskStatus,
    *,
    attempt: Attempt | None = None,
    uncommitted: bool = False,
    where: ColumnElement[bool] | None = None,
    **values: Any,
) -> Task | None:
    """Move an active task to the final ``status`` (with ``values``), commit, count it and
    announce it; return the task, or None when it had already ended (and leave it so).

    :param attempt: end it only if this attempt still owns it; otherwise raise
        :class:`AttemptSuperseded`, like every other write of a stale attempt.
    :param uncommitted: also leave a task that has begun delivering its result (a cancel).
    :param where: a further condition, e.g. the reaper's "still untouched".
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status} is not a final status")
    condition = owns(attempt) if attempt else Task.status.in_(ACTIVE_STATUSES)
    condition &= Task.id == task_id
    if uncommitted:
        condition &= Task.committed_at.is_(None)
    if where is not None:
        condition &= where
    now = utcnow()
    ended = db.session.scalar(
        update(Task)
        .where(condition)
        .values(status=status, finished_at=now, updated_at=now, retry_at=None, **values)
        .returning(Task.id)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if ended is None:
        if attempt is not None:
            raise AttemptSuperseded(f"attempt {attempt.number} of task {task_id}")
        return None
    task = db.session.get(Task, task_id, populate_existing=True)
    if status == TaskStatus.FAILED:
        log.warning("task %s failed: %s", task_id, task.error)
    metrics.task_ended(task)
    events.announce(events.FINISHED, task)
    return task
