"""Declare job types and run one attempt of a task.

A job type is a function ``body(task, attempt, progress)`` decorated with :func:`job`. The
decorator makes it a Dramatiq actor that takes only a task id and does the bookkeeping every
job needs: start a fenced attempt (skipping a task already final), run the body, and record
success or the *final* failure with a reason the user can read (through
:func:`microblog.jobs.ending.end`). ``attempt`` is the fencing token, for the body's own
writes (see :mod:`microblog.jobs.attempts`); ``progress`` reports how far it is.

Outages of a dependency (the database, Redis, the mail relay) are expected: the attempt's
session is discarded (its connection may be dead, so it is not trusted to roll back), the
task says what it waits for and when it tries again, and the message comes back after a
backoff that doubles up to ``max_backoff``, for ``max_retries`` retries (by default about
eight minutes in all, so an outage of a few minutes costs nothing). Any other error is a bug
or bad data that a retry cannot fix: the task fails at once, with its traceback logged.
"""

import logging
import os
import random
import smtplib
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
import redis
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded
from flask import Flask
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError

from microblog import mailer, metrics
from microblog.database import discard_session
from microblog.extensions import db
from microblog.i18n import N_, LazyMessage, _l, msgid
from microblog.jobs import events, registry
from microblog.jobs.attempts import Attempt, AttemptSuperseded, hold, start_attempt
from microblog.jobs.ending import end
from microblog.jobs.events import TaskEvent
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.registry import JobType
from microblog.jobs.worker.broker import placeholder_broker
from microblog.jobs.worker.liveness import live_workers
from microblog.models import utcnow
from microblog.outages import is_outage

log = logging.getLogger(__name__)

# A job's body: it may return a little JSON (a dict, a list…), kept as the task's result.
JobBody = Callable[[Task, Attempt, ProgressReporter], object]
SEE_THE_RESULT = _l("See the result")  # a result link's text, unless the type says
CRASHED_TOO_OFTEN = N_("The job stopped unexpectedly too many times; please try again later.")
UNKNOWN_JOB_TYPE = N_(
    "This kind of job cannot run right now (an update is under way). "
    "Please try again in a few minutes."
)


class JobError(Exception):
    """A failure that retrying cannot fix; its message, a message id (``N_("…")``), is shown
    to the user in their language."""


def job(
    *,
    description: str | LazyMessage,
    queue_name: str = "default",
    max_retries: int = 12,
    min_backoff: int = 2_000,
    max_backoff: int = 60_000,
    time_limit: int = 15 * 60_000,
    crash_allowance: int = 2,
    result_endpoint: str | None = None,
    result_label: str | LazyMessage = SEE_THE_RESULT,
    summary: Callable[[Any], str | None] | None = None,
    counts: Callable[[int, int], str] | None = None,
) -> Callable[[JobBody], dramatiq.Actor]:
    """Make ``body`` a job type; its actor is named after the function.

    The type exists for an app only if its module is one of the app's ``JOB_MODULES``.

    :param description: what the user sees, e.g. ``_l("Exporting your posts")``: stored as
        its message id and translated whenever a card shows it (see :mod:`microblog.i18n`).
    :param max_retries: retries after a dependency's outage, the delay doubling from
        ``min_backoff`` up to ``max_backoff`` milliseconds (the defaults wait about eight
        minutes in all).
    :param crash_allowance: extra attempts for runs that killed their worker (the broker
        redelivers those without limit); past that the task fails.
    :param result_endpoint: endpoint taking ``task_id`` where a finished task's result lives.
    :param result_label: the text of the card's link to it, e.g. ``_l("Download your archive")``.
    :param summary: ``summary(result)`` describes a succeeded task's result (what ``body``
        returned) in a few words for its card, in the current language, e.g.
        "12,345 posts · 1.2 MB"; it runs when the card is shown, in the reader's language.
    :param counts: ``counts(done, total)`` says in words how far a task is, in the current
        language, e.g. "51,000 of 300,404 posts" (with ``ngettext``); without it the card
        says "51,000 of 300,404".
    """

    def decorate(body: JobBody) -> dramatiq.Actor:
        max_attempts = max_retries + 1 + crash_allowance

        def perform(task_id: str) -> None:
            run_task(task_id, body, max_attempts=max_attempts)

        actor = declare_actor(perform, body, queue_name, max_retries=max_retries,
                              min_backoff=min_backoff, max_backoff=max_backoff,
                              time_limit=time_limit)  # fmt: skip
        registry.declare(JobType(actor, msgid(description), result_endpoint, msgid(result_label),
                                 summary, counts))  # fmt: skip
        return actor

    return decorate


def declare_actor(
    perform: Callable[..., None], wrapped: Callable, queue_name: str, **options: int
) -> dramatiq.Actor:
    """Make ``perform`` (which runs ``wrapped``) an actor named after ``wrapped``, on the
    placeholder broker until the app's wiring binds it."""
    perform.__module__, perform.__qualname__ = wrapped.__module__, wrapped.__qualname__
    return dramatiq.Actor(
        perform,
        broker=placeholder_broker(),
        actor_name=wrapped.__name__,
        queue_name=queue_name,
        priority=0,
        options=options,
    )


def errand(
    *,
    queue_name: str = "default",
    max_retries: int = 8,
    min_backoff: int = 2_000,
    max_backoff: int = 60_000,
    time_limit: int = 2 * 60_000,
) -> Callable[[Callable[..., None]], dramatiq.Actor]:
    """Make ``function`` an errand: a small piece of work for a worker with no task row, such
    as an email to send for a request (see :mod:`microblog.jobs.registry`). Its arguments
    travel as JSON; it runs in an app context.

    A dependency's outage is retried like a job's, with the same backoff, and its last one
    logged as an error; any other exception is logged with its traceback and not retried.
    Every errand runs whatever ``JOB_MODULES`` says, once its module is imported.
    """

    def decorate(function: Callable[..., None]) -> dramatiq.Actor:
        name = function.__name__

        def perform(*args: Any, **kwargs: Any) -> None:
            try:
                function(*args, **kwargs)
            except dramatiq.Retry:
                raise
            except Exception as error:
                discard_session()
                if not is_outage(error):
                    log.exception("errand %s failed", name)
                elif is_last_attempt():
                    log.error("errand %s met an outage for the last time; it is dropped",
                              name, exc_info=True)  # fmt: skip
                else:
                    delay_ms = retry_delay_ms()
                    log.warning("errand %s met an outage (%s: %s); it will be retried in %.0f s",
                                name, type(error).__name__, error, delay_ms / 1000)  # fmt: skip
                    raise dramatiq.Retry(str(error), delay=delay_ms) from None

        actor = declare_actor(perform, function, queue_name, max_retries=max_retries,
                              min_backoff=min_backoff, max_backoff=max_backoff,
                              time_limit=time_limit)  # fmt: skip
        registry.declare_errand(actor)
        return actor

    return decorate


def run_task(task_id: str, body: JobBody, *, max_attempts: int) -> None:
    """Run one attempt of a task; a dependency's outage, here or in the body, is retried.

    Only the final failure is recorded on the task. An attempt that loses its task to a newer
    one (see :mod:`microblog.jobs.attempts`) stops at its next write and ends quietly.
    """
    attempt = None
    try:
        attempt = start_attempt(task_id)
        if attempt is None:
            log.info("task %s is missing or already final; message ignored", task_id)
            return
        if attempt.number > max_attempts:
            detail = f"{attempt.number - 1} attempts ended with their worker gone (killed or lost)"
            finish(attempt, error=CRASHED_TOO_OFTEN, detail=detail)
            return
        task = db.session.get(Task, task_id)
        metrics.TASK_ATTEMPTS.labels(task.name).inc()
        card = events.task_event(task)  # kept: with the database away, it cannot be read
        events.send(task.user_id, events.PROGRESS, card)
        run_body(task, attempt, body, card)
    except AttemptSuperseded:
        discard_session()
        log.info("task %s: attempt %d was superseded (cancelled or taken over); it stops here",
                 task_id, attempt.number)  # fmt: skip
    except dramatiq.Retry:
        raise
    except Exception as error:  # outside the body: starting, or recording how it ended
        if not is_outage(error):
            raise
        discard_session()
        what = f"attempt {attempt.number}" if attempt else "a new attempt"
        if is_last_attempt():
            log.warning("task %s: %s met an outage for the last time (%s: %s); the reaper "
                        "will close it", task_id, what, type(error).__name__, error)  # fmt: skip
            return
        retry_later(task_id, f"{what} met an outage ({type(error).__name__}: {error})")


def run_body(task: Task, attempt: Attempt, body: JobBody, card: TaskEvent) -> None:
    """Run the job's body and record how it ended, unless Dramatiq is to retry it; ``card``
    is the task's event as the attempt started."""
    user_id = task.user_id  # read now: after an outage the task's row cannot be
    try:
        result = body(task, attempt, ProgressReporter(task, attempt))
    except AttemptSuperseded:
        raise
    except JobError as error:
        discard_session()
        finish(attempt, error=str(error))
    except TimeLimitExceeded:
        discard_session()
        # Another attempt would most likely run out of time again: the user decides.
        finish(attempt, error=N_("The job took too long and was stopped. Please try again later."))
    except Exception as error:
        discard_session()  # its connection may be dead: never trusted to roll back
        if not is_outage(error):
            log.exception("task %s: attempt %d failed", attempt.task_id, attempt.number)
            finish_or_leave(attempt, user_safe_reason(error))
        elif is_last_attempt():
            log.error("task %s: attempt %d met an outage for the last time",
                      attempt.task_id, attempt.number, exc_info=True)  # fmt: skip
            finish_or_leave(attempt, user_safe_reason(error))
        else:
            wait_for_retry(attempt, user_id, card, error)
    else:
        finish(attempt, result=result)


def wait_for_retry(attempt: Attempt, user_id: int, card: TaskEvent, error: BaseException) -> None:
    """Say on the task what it waits for and when it tries again, then hand the message back
    to Dramatiq for that time. The user can cancel it meanwhile.

    :raise AttemptSuperseded: the task was cancelled (or taken over) meanwhile.
    :raise dramatiq.Retry: otherwise.
    """
    delay_ms = retry_delay_ms()
    retry_at = utcnow() + timedelta(milliseconds=delay_ms)
    reason = waiting_reason(error)
    try:
        hold(db.session, attempt, error=reason, retry_at=retry_at)
        db.session.commit()
        card = events.task_event(db.session.get(Task, attempt.task_id))
    except SQLAlchemyError:  # the database is the outage: the card hears of it live only
        discard_session()
        card = events.amend(card, attempt=attempt.number, error=reason,
                            retry_at=retry_at.isoformat())  # fmt: skip
    events.send(user_id, events.PROGRESS, card)
    retry_later(attempt.task_id, f"attempt {attempt.number} failed ({type(error).__name__}: "
                f"{error})", delay_ms)  # fmt: skip


def retry_later(task_id: str, what: str, delay_ms: int | None = None) -> None:
    """Log one WARNING line (no traceback) and have Dramatiq run the message again later."""
    delay_ms = retry_delay_ms() if delay_ms is None else delay_ms
    log.warning("task %s: %s; it will be retried in %.0f s", task_id, what, delay_ms / 1000)
    raise dramatiq.Retry(what, delay=delay_ms)


def retry_delay_ms() -> int:
    """Return how long to wait before the current message's next try: ``min_backoff``
    doubling with each retry up to ``max_backoff``, less up to a fifth at random so that
    the tasks an outage stopped together do not all knock again at once."""
    message = CurrentMessage.get_current_message()
    options = registry.actor_options(message.actor_name) if message else {}
    retries = message.options.get("retries", 0) if message else 0
    ceiling = min(
        options.get("max_backoff", 60_000), options.get("min_backoff", 2_000) * 2**retries
    )
    return int(ceiling * random.uniform(0.8, 1.0))


def waiting_reason(error: BaseException) -> str:
    """Say in the user's words which dependency the task waits for."""
    if isinstance(error, mailer.RelayUntrusted):
        return error.reason
    if isinstance(error, mailer.TemporarilyRefused):
        return N_("The mail server refused the email for now.")
    if isinstance(error, smtplib.SMTPException | OSError):
        return N_("The mail server is unreachable.")
    if isinstance(error, redis.RedisError):
        return N_("The job queue is unreachable.")
    return N_("The database is unavailable.")


def finish_or_leave(attempt: Attempt, error: str) -> None:
    """Fail the task for good; if the database cannot record it now, leave the task to the
    reaper, which closes it once no message backs it."""
    try:
        finish(attempt, error=error)
    except SQLAlchemyError as failure:
        discard_session()
        log.warning("task %s: could not record its failure (%s); the reaper will close it",
                    attempt.task_id, failure)  # fmt: skip


def finish(
    attempt: Attempt, error: str | None = None, detail: str | None = None, result: object = None
) -> None:
    """End the attempt's task: succeeded with ``result`` (what the body returned), or failed
    with ``error``, the reason shown to the user. ``detail`` is kept for operators, and is
    the traceback of the exception being handled when there is one.

    :raise AttemptSuperseded: the task has moved on without this attempt.
    """
    if error is None:
        end(attempt.task_id, TaskStatus.SUCCEEDED, attempt=attempt, progress=100, error=None,
            done=func.coalesce(Task.total, Task.done), result=result)  # fmt: skip
        return
    if detail is None and sys.exception() is not None:
        detail = traceback.format_exc()
    end(attempt.task_id, TaskStatus.FAILED, attempt=attempt, error=error, failure_detail=detail)


def is_last_attempt() -> bool:
    """Tell whether Dramatiq will give up on the current message if this attempt fails."""
    message = CurrentMessage.get_current_message()
    if message is None:  # called directly, not by a worker: nothing will retry
        return True
    options = registry.actor_options(message.actor_name)
    max_retries = message.options.get("max_retries", options.get("max_retries", 0))
    return message.options.get("retries", 0) >= max_retries


def user_safe_reason(error: BaseException) -> str:
    """Say what went wrong in words for the user, without internals."""
    if isinstance(error, mailer.RelayUntrusted):
        return error.reason
    if isinstance(error, mailer.TemporarilyRefused):
        return N_("The mail server kept refusing the email. Please try again later.")
    if isinstance(error, smtplib.SMTPException | OSError):
        return N_("The email could not be sent: the mail server did not answer. Please try again.")
    if isinstance(error, redis.RedisError):
        return N_("The job queue was unreachable. Please try again later.")
    if isinstance(error, SQLAlchemyError):
        return N_("The database was unavailable. Please try again later.")
    return N_("An unexpected error stopped the job. Please try again later.")


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
                runners = [w.name for w in live_workers(broker) if name in w.job_types]
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
    end(task_id, TaskStatus.FAILED, error=UNKNOWN_JOB_TYPE, failure_detail=detail)
