"""Cancel a task, or try a failed or cancelled one again.

The task row is the only switch. Cancelling is one conditional UPDATE from queued or running to
``cancelled``: it frees the user's slot for that job type at once (the one-active-task index
covers queued and running only). Nothing is sent to the worker. A queued message is dropped
when a worker picks it up (``start_attempt`` starts only active tasks), and a running attempt
stops at its next fenced write (``hold``): progress is written every 0.1 s while work goes
on, so it stops within about that, and its transaction, with any half-stored archive, is
rolled back. Once a job has begun delivering what it cannot take back (the export's email,
from just before its data goes to the relay), it marks the task ``committed_at`` in the same
fenced write, and a cancel is refused from then on: a task never ends "cancelled" with its
email delivered. Whichever of the two writes commits first wins, the other finds the row
moved on.
"""

from sqlalchemy import update

from microblog.extensions import db
from microblog.i18n import N_
from microblog.jobs import events, registry
from microblog.jobs.ending import end
from microblog.jobs.launch import launch
from microblog.jobs.models import RETRYABLE_STATUSES, Task, TaskStatus
from microblog.models import utcnow


class NotCancellable(Exception):
    """The task has already ended."""


class TooLateToCancel(NotCancellable):
    """The task is delivering its result, which cannot be taken back; it will end soon."""


class NotDismissable(Exception):
    """Only a finished task's card can be closed."""


class NotRetryable(Exception):
    """Only a failed or cancelled task can be tried again."""


# What a task cancelled by an operator says to its user (kept as its error).
CANCELLED_BY_OPERATOR = N_("An operator cancelled this job.")


def cancel(task: Task, reason: str | None = None) -> None:
    """Cancel a queued or running task, commit, and announce it finished; ``reason`` (a
    message id) tells its user why, when someone else cancelled it.

    :raise TooLateToCancel: it is delivering its result.
    :raise NotCancellable: it had ended already (perhaps a moment ago).
    """
    if end(task.id, TaskStatus.CANCELLED, uncommitted=True, error=reason) is None:
        db.session.refresh(task)
        raise (TooLateToCancel if task.is_active else NotCancellable)(task.id)


def retry(task: Task) -> Task:
    """Start the same job again for the same user, as a new task in the same language (an
    operator's retry emails the user in theirs); return it.

    :raise NotRetryable: the task is active or succeeded, or its job type is gone.
    :raise TaskAlreadyActive, QueueUnavailable: as :func:`microblog.jobs.launch.launch`.
    """
    if task.status not in RETRYABLE_STATUSES:
        raise NotRetryable(task.id)
    job_type = registry.job_types().get(task.name)
    if job_type is None:  # a job type this version no longer has
        raise NotRetryable(task.id)
    return launch(job_type.actor, task.user_id, task.locale)  # whoever retries it


def dismiss(task: Task) -> None:
    """Close a finished task's card for good (every tab drops it on its next event); commit.

    :raise NotDismissable: the task is still active.
    """
    if task.is_active:
        raise NotDismissable(task.id)
    task.dismissed_at = task.dismissed_at or utcnow()
    db.session.commit()
    events.announce(events.DISMISSED, task)


def result_opened(task_id: str) -> None:
    """Note that the user opened a succeeded task's result: its card counts as seen, and
    goes from the next page (the open ones keep it: no event is sent); commit.

    An UPDATE by id, which loads nothing: a caller that closed its session first keeps the
    objects it loaded as they were.
    """
    db.session.execute(
        update(Task).where(Task.id == task_id, Task.dismissed_at.is_(None))
        .values(dismissed_at=utcnow())
    )  # fmt: skip
    db.session.commit()
