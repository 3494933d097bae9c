"""Declare job types and run one attempt of a task.

A job type is a function ``body(task, progress)`` decorated with :func:`job`. The decorator
makes it a Dramatiq actor that takes only a task id and does the bookkeeping every job needs:
start a fenced attempt (skipping a task already final), run the body, and record success or
the *final* failure with a reason the user can read. ``progress.attempt`` is the attempt's
fencing token, for the body's own writes (see :mod:`microblog.jobs.attempts`).
"""

import logging
import os
import smtplib
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded
from flask import Flask
from sqlalchemy import func
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from microblog import metrics
from microblog.extensions import db
from microblog.jobs import broker as glue
from microblog.jobs import events, registry
from microblog.jobs.attempts import Attempt, AttemptSuperseded, hold, start_attempt
from microblog.jobs.models import Task, TaskStatus, end_if_active
from microblog.jobs.progress import ProgressReporter, announce, announce_finished
from microblog.jobs.registry import JobType
from microblog.models import utcnow
from microblog.urls import site_path

log = logging.getLogger(__name__)

# A job's body: it may return a little JSON (a dict, a list…), kept as the task's result.
JobBody = Callable[[Task, ProgressReporter], object]
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
UNKNOWN_JOB_TYPE = (
    "This kind of job cannot run right now (an update is under way). "
    "Please try again in a few minutes."
)


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

    The type exists for an app only if its module is one of the app's ``JOB_MODULES``.

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
        registry.declare(JobType(actor, description, result_endpoint, summary))
        return actor

    return decorate


def result_of(task: Task) -> dict[str, str | None]:
    """Return where a succeeded task's result is and what it is, for its card and events."""
    job_type = registry.find(task.name)
    if job_type is None or task.status != TaskStatus.SUCCEEDED:
        return {"url": None, "summary": None}
    endpoint, summarize = job_type.result_endpoint, job_type.summary
    return {
        "url": site_path(endpoint, task_id=task.id) if endpoint else None,
        "summary": summarize(task) if summarize else None,
    }


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
        result = body(task, ProgressReporter(task, attempt))
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
        finish(attempt, result=result)


def finish(
    attempt: Attempt, error: str | None = None, detail: str | None = None, result: object = None
) -> None:
    """Move the attempt's task to its final state, commit, and announce it.

    ``error`` is the reason shown to the user; ``detail`` is kept for operators, and is the
    traceback of the exception being handled when there is one. ``result`` is what a
    succeeded body returned.
    """
    now = utcnow()
    if error is None:
        values = {"status": TaskStatus.SUCCEEDED, "progress": 100, "error": None,
                  "done": func.coalesce(Task.total, Task.done), "result": result}  # fmt: skip
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
    max_retries = message.options.get("max_retries", registry.find(message.actor_name).max_retries)
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


class UnknownJobTypes(Middleware):
    """Hand a message for a job type this worker does not run to one that does, or fail its
    task at once when no live worker runs it.

    That happens while a deploy rolls out: web processes that know a new job type send it to
    workers that do not yet (and a removed type's last messages reach workers without it).
    Dramatiq would move the message to the dead-letter queue and leave its task queued until
    the reaper closed it as lost, minutes later. Here, while some live worker runs the type
    (each says which it runs, see ``live_workers``), the message goes back to the queue after
    ``HANDOVER_DELAY_MS`` for another try, for up to ``HANDOVER_LIMIT_MS`` from when it was
    sent; otherwise its task fails at once with a reason for the user, who can try again
    when the deploy is done, and the worker's name in the detail for operators.
    """

    HANDOVER_DELAY_MS = 2_000
    HANDOVER_LIMIT_MS = 10 * 60_000

    def __init__(self, app: Flask) -> None:
        self.app = app

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if not isinstance(getattr(message, "_exception", None), ActorNotFound):
            return
        name, task_id = message.actor_name, message.message_id
        with self.app.app_context():
            try:
                runners = [w.name for w in glue.live_workers(broker) if name in w.job_types]
            except redis.RedisError:
                runners = []
            age_ms = time.time() * 1000 - message.message_timestamp
            if runners and age_ms < self.HANDOVER_LIMIT_MS:
                log.warning(
                    "task %s: this worker does not run %s; back to the queue for one that does "
                    "(%s)", task_id, name, ", ".join(runners)
                )  # fmt: skip
                broker.enqueue(message, delay=self.HANDOVER_DELAY_MS)
            else:
                fail_unknown_job(task_id, name)


def fail_unknown_job(task_id: str, name: str) -> None:
    """Fail a still active task whose job type this process does not know; commit, announce."""
    detail = (
        f"worker {socket.gethostname()}:{os.getpid()} does not know the job type {name!r}: "
        "its JOB_MODULES lack it (workers older or newer than the web processes?)"
    )
    failed = end_if_active(
        task_id, TaskStatus.FAILED, error=UNKNOWN_JOB_TYPE, failure_detail=detail
    )
    if failed:
        log.warning("task %s failed at once: %s", task_id, detail)
        announce_finished(db.session.get(Task, task_id))
