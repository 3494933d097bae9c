"""Declare job types and run one attempt of a task.

A job type is a function ``body(task, progress)`` decorated with :func:`job`. The decorator
makes it a Dramatiq actor that takes only a task id and does the bookkeeping every job needs:
start a fenced attempt (skipping a task already final), run the body, and record success or
the *final* failure with a reason the user can read. ``progress.attempt`` is the attempt's
fencing token, for the body's own writes (see :mod:`microblog.jobs.attempts`).
"""

import logging
import smtplib
import socket
import sys
import traceback
from collections.abc import Callable

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import func
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from microblog import metrics
from microblog.extensions import db
from microblog.jobs import broker as glue
from microblog.jobs import events
from microblog.jobs.attempts import Attempt, AttemptSuperseded, hold, start_attempt
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.progress import ProgressReporter, announce, announce_finished
from microblog.models import utcnow
from microblog.urls import site_path

log = logging.getLogger(__name__)

JobBody = Callable[[Task, ProgressReporter], None]
# Errors of a dependency that is away for now (mail relay, Redis, database): retried with one
# WARNING line each, no traceback.
EXPECTED_ERRORS = (
    ConnectionError,  # refused, reset, or the relay's answer lost (mailer.DeliveryUncertain)
    TimeoutError,
    socket.gaierror,  # the relay's name does not resolve
    smtplib.SMTPException,
    redis.RedisError,
    OperationalError,
)
CRASHED_TOO_OFTEN = "The job stopped unexpectedly too many times; please try again later."
# Per job type (actor name): what the user sees, and the endpoint of its result.
_descriptions: dict[str, str] = {}
_result_endpoints: dict[str, str] = {}
_summaries: dict[str, Callable[[Task], str | None]] = {}


class JobError(Exception):
    """A failure that retrying cannot fix; its message is shown to the user."""


def job(
    *,
    description: str,
    queue_name: str = "default",
    max_retries: int = 3,
    min_backoff: int = 2_000,
    max_backoff: int = 60_000,
    time_limit: int = 15 * 60_000,
    crash_allowance: int = 2,
    result_endpoint: str | None = None,
    summary: Callable[[Task], str | None] | None = None,
) -> Callable[[JobBody], dramatiq.Actor]:
    """Make ``body`` a job type; its actor is named after the function.

    :param description: what the user sees, e.g. "Exporting your posts".
    :param max_retries: retries after an error, with exponential backoff between
        ``min_backoff`` and ``max_backoff`` milliseconds.
    :param crash_allowance: extra attempts for runs that killed their worker (the broker
        redelivers those without limit); past that the task fails.
    :param result_endpoint: endpoint taking ``task_id`` where a finished task's result lives.
    :param summary: ``summary(task)`` describes a succeeded task's result in a few words for
        its card, e.g. "12,345 posts · 1.2 MB".
    """

    def decorate(body: JobBody) -> dramatiq.Actor:
        max_attempts = max_retries + 1 + crash_allowance

        def perform(task_id: str) -> None:
            run_task(task_id, body, max_attempts=max_attempts)

        perform.__module__, perform.__qualname__ = body.__module__, body.__qualname__
        if result_endpoint:
            _result_endpoints[body.__name__] = result_endpoint
        if summary:
            _summaries[body.__name__] = summary
        _descriptions[body.__name__] = description
        actor = dramatiq.Actor(
            perform,
            broker=glue.placeholder_broker(),
            actor_name=body.__name__,
            queue_name=queue_name,
            priority=0,
            options={
                "max_retries": max_retries,
                "min_backoff": min_backoff,
                "max_backoff": max_backoff,
                "time_limit": time_limit,
            },
        )
        return glue.declare(actor)

    return decorate


def job_types() -> list[str]:
    """Return the names of the declared job types."""
    return sorted(_descriptions)


def description_of(actor: dramatiq.Actor) -> str:
    return _descriptions[actor.actor_name]


def result_url(task: Task) -> str | None:
    """Return the site-relative URL of a succeeded task's result, if its job type has one."""
    endpoint = _result_endpoints.get(task.name)
    if endpoint is None or task.status != TaskStatus.SUCCEEDED:
        return None
    return site_path(endpoint, task_id=task.id)


def result_of(task: Task) -> dict[str, str | None]:
    """Return where a succeeded task's result is and what it is, for its card and events."""
    summarize = _summaries.get(task.name)
    done = task.status == TaskStatus.SUCCEEDED
    return {"url": result_url(task), "summary": summarize(task) if summarize and done else None}


def run_task(task_id: str, body: JobBody, *, max_attempts: int) -> None:
    """Run one attempt of a task; expected errors are retried by Dramatiq, unexpected ones too.

    Only the final failure is recorded on the task. An attempt that loses its task to a newer
    one (see :mod:`microblog.jobs.attempts`) stops at its next write and ends quietly.
    """
    attempt = start_attempt(task_id)
    if attempt is None:
        log.info("task %s is missing or already final; message ignored", task_id)
        return
    try:
        if attempt.number > max_attempts:
            detail = f"{attempt.number - 1} attempts ended with their worker gone (killed or lost)"
            finish(attempt, error=CRASHED_TOO_OFTEN, detail=detail)
            return
        task = db.session.get(Task, task_id)
        metrics.TASK_ATTEMPTS.labels(task.name).inc()
        announce(task.user_id, events.PROGRESS, events.task_data(task))
        run_body(task, attempt, body)
    except AttemptSuperseded:
        db.session.rollback()
        log.info(
            "task %s: attempt %d was superseded (cancelled or taken over); it stops here",
            task_id,
            attempt.number,
        )


def run_body(task: Task, attempt: Attempt, body: JobBody) -> None:
    """Run the job's body and record how it ended, unless Dramatiq is to retry it."""
    try:
        body(task, ProgressReporter(task, attempt))
    except AttemptSuperseded:
        raise
    except JobError as error:
        db.session.rollback()
        finish(attempt, error=str(error))
    except TimeLimitExceeded:
        db.session.rollback()
        # Another attempt would most likely run out of time again: the user decides.
        finish(attempt, error="The job took too long and was stopped. Please try again later.")
    except EXPECTED_ERRORS as error:
        db.session.rollback()
        if is_last_attempt():
            finish(attempt, error=user_safe_reason(error))
            return
        log.warning("task %s: attempt %d failed (%s: %s); it will be retried",
                    task.id, attempt.number, type(error).__name__, error)  # fmt: skip
        raise dramatiq.Retry(str(error)) from error  # retried, without a traceback in the log
    except Exception as error:
        db.session.rollback()
        if not is_last_attempt():
            raise  # Dramatiq logs it with its traceback and retries
        log.exception("task %s: attempt %d failed for the last time", task.id, attempt.number)
        finish(attempt, error=user_safe_reason(error))
    else:
        finish(attempt)


def finish(attempt: Attempt, error: str | None = None, detail: str | None = None) -> None:
    """Move the attempt's task to its final state, commit, and announce it.

    ``error`` is the reason shown to the user; ``detail`` is kept for operators, and is the
    traceback of the exception being handled when there is one.
    """
    now = utcnow()
    if error is None:
        values = {"status": TaskStatus.SUCCEEDED, "progress": 100, "error": None,
                  "done": func.coalesce(Task.total, Task.done)}  # fmt: skip
    else:
        log.warning("task %s failed: %s", attempt.task_id, error)
        if detail is None and sys.exception() is not None:
            detail = traceback.format_exc()
        values = {"status": TaskStatus.FAILED, "error": error, "failure_detail": detail}
    hold(db.session, attempt, finished_at=now, **values)
    db.session.commit()
    task = db.session.get(Task, attempt.task_id, populate_existing=True)
    announce_finished(task, **result_of(task))


def is_last_attempt() -> bool:
    """Tell whether Dramatiq will give up on the current message if this attempt fails."""
    message = CurrentMessage.get_current_message()
    if message is None:  # called directly, not by a worker: nothing will retry
        return True
    actor = glue.actor_named(message.actor_name)
    max_retries = message.options.get("max_retries", actor.options["max_retries"])
    return message.options.get("retries", 0) >= max_retries


def user_safe_reason(error: BaseException) -> str:
    """Say what went wrong in words for the user, without internals."""
    if isinstance(error, smtplib.SMTPException | OSError):
        return "The email could not be sent: the mail server did not answer. Please try again."
    if isinstance(error, redis.RedisError):
        return "The job queue was unreachable. Please try again later."
    if isinstance(error, SQLAlchemyError):
        return "The database was unavailable. Please try again later."
    return "An unexpected error stopped the job. Please try again later."
