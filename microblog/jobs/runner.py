"""Declare job types and run one attempt of a task.

A job type is a function ``body(task, progress)`` decorated with :func:`job`. The decorator
makes it a Dramatiq actor that takes only a task id and does the bookkeeping every job needs:
load the task, skip it if it is already final, count the attempt, mark it running, run the
body, and record success or the *final* failure with a reason the user can read.
"""

import logging
import smtplib
from collections.abc import Callable

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db
from microblog.jobs import broker as glue
from microblog.jobs import events
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.progress import ProgressReporter, announce
from microblog.urls import site_path

log = logging.getLogger(__name__)

JobBody = Callable[[Task, ProgressReporter], None]
# Per job type (actor name): what the user sees, and the endpoint of its result.
_descriptions: dict[str, str] = {}
_result_endpoints: dict[str, str] = {}


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
) -> Callable[[JobBody], dramatiq.Actor]:
    """Make ``body`` a job type; its actor is named after the function.

    :param description: what the user sees, e.g. "Exporting your posts".
    :param max_retries: retries after an error, with exponential backoff between
        ``min_backoff`` and ``max_backoff`` milliseconds.
    :param crash_allowance: extra attempts for runs that killed their worker (the broker
        redelivers those without limit); past that the task fails.
    :param result_endpoint: endpoint taking ``task_id`` where a finished task's result lives.
    """

    def decorate(body: JobBody) -> dramatiq.Actor:
        max_attempts = max_retries + 1 + crash_allowance

        def perform(task_id: str) -> None:
            run_task(task_id, body, max_attempts=max_attempts)

        perform.__module__, perform.__qualname__ = body.__module__, body.__qualname__
        if result_endpoint:
            _result_endpoints[body.__name__] = result_endpoint
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


def description_of(actor: dramatiq.Actor) -> str:
    return _descriptions[actor.actor_name]


def result_url(task: Task) -> str | None:
    """Return the site-relative URL of a succeeded task's result, if its job type has one."""
    endpoint = _result_endpoints.get(task.name)
    if endpoint is None or task.status != TaskStatus.SUCCEEDED:
        return None
    return site_path(endpoint, task_id=task.id)


def run_task(task_id: str, body: JobBody, *, max_attempts: int) -> None:
    """Run one attempt of a task; let transient errors propagate so Dramatiq retries them."""
    task = db.session.get(Task, task_id)
    if task is None:
        log.warning("task %s does not exist; message dropped", task_id)
        return
    if TaskStatus(task.status).is_final:
        log.info("task %s is already %s; redelivered message ignored", task_id, task.status)
        return
    if task.attempts >= max_attempts:
        finish(task, error="The job stopped unexpectedly too many times; please try again later.")
        return
    task.start()
    db.session.commit()
    announce(task.user_id, events.PROGRESS, events.task_data(task))
    try:
        body(task, ProgressReporter(task))
    except JobError as error:
        db.session.rollback()
        finish(task, error=str(error))
    except (Exception, TimeLimitExceeded) as error:
        db.session.rollback()
        if is_last_attempt():
            finish(task, error=user_safe_reason(error))
        raise
    else:
        finish(task)


def finish(task: Task, error: str | None = None) -> None:
    """Move the task to its final state, commit, and announce it."""
    db.session.refresh(task)
    if error is None:
        task.succeed()
    else:
        log.warning("task %s failed: %s", task.id, error)
        task.fail(error)
    db.session.commit()
    announce(task.user_id, events.FINISHED, events.task_data(task, url=result_url(task)))


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
    if isinstance(error, TimeLimitExceeded):
        return "The job took too long and was stopped."
    if isinstance(error, smtplib.SMTPException | ConnectionError | TimeoutError):
        return "The email could not be sent: the mail server did not answer. Please try again."
    if isinstance(error, redis.RedisError):
        return "The job queue was unreachable. Please try again later."
    if isinstance(error, SQLAlchemyError):
        return "The database was unavailable. Please try again later."
    return "An unexpected error stopped the job. Please try again later."
