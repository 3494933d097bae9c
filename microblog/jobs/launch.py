"""Start a job: insert the task row, commit, then send the message; and send an errand's
message, kept in the database while the broker is away."""

import logging

import dramatiq
import redis
from dramatiq.errors import ActorNotFound, BrokerConnectionError
from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from microblog.extensions import db
from microblog.i18n import N_, current_language
from microblog.jobs import events, registry
from microblog.jobs.ending import end
from microblog.jobs.models import KeptMessage, Task, TaskStatus

log = logging.getLogger(__name__)


class TaskAlreadyActive(Exception):
    """The user already has a queued or running task of this type."""


class QueueUnavailable(Exception):
    """The broker could not be reached; the task was marked failed."""


def launch(actor: dramatiq.Actor, user_id: int, locale: str | None = None) -> Task:
    """Create a task for ``user_id`` and enqueue ``actor`` with its id. Commits.

    The row is committed before the message is sent, so a fast worker always finds it. The
    message's id is the task's id, which lets the reaper ask the broker whether a task is
    still backed by a live message. ``locale`` is the language of what the job writes for its
    user (see ``Task.locale``): by default the current request's.

    :raise TaskAlreadyActive: a task of this type is queued or running for the user
        (enforced by a partial unique index, so concurrent requests cannot both win).
    :raise QueueUnavailable: Redis did not answer; the task is committed as failed.
    """
    job_type = registry.job_types().get(actor.actor_name)
    if job_type is None:
        raise LookupError(f"{actor.actor_name} is not a job type of this app (JOB_MODULES)")
    task = Task(user_id=user_id, name=job_type.name, description=job_type.description,
                locale=locale or current_language())  # fmt: skip
    db.session.add(task)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise TaskAlreadyActive(actor.actor_name) from error
    # Announce "queued" before sending: once sent, a fast worker's "running" could otherwise
    # reach the browser first and be followed by a stale "queued".
    events.announce(events.PROGRESS, task)
    try:
        broker = current_app.extensions["dramatiq"]  # this app's, whatever app came last
        broker.enqueue(actor.message(task.id).copy(message_id=task.id))
    except (redis.RedisError, BrokerConnectionError) as error:
        log.error("could not enqueue task %s: %s", task.id, error)
        end(
            task.id,
            TaskStatus.FAILED,
            error=N_("The job queue is unreachable right now, so the job could not start."),
            failure_detail=f"enqueue failed: {type(error).__name__}: {error}",
        )
        raise QueueUnavailable(task.id) from error
    return task


KEPT_BATCH = 100  # kept messages sent by one pass; the next pass sends more


def send_or_keep(actor: dramatiq.Actor, *args: object) -> None:
    """Send an errand's message (``args``: JSON); with the broker away, keep it in the
    database for a worker to send once the broker is back (:func:`send_kept`). Commits what
    it keeps: call it after the change it is about is committed.
    """
    message = actor.message(*args)
    try:
        current_app.extensions["dramatiq"].enqueue(message)
        return
    except (redis.RedisError, BrokerConnectionError) as error:
        log.warning("errand %s not queued, the broker is unreachable (%s); kept to send later",
                    actor.actor_name, error)  # fmt: skip
    db.session.add(KeptMessage(id=message.message_id, actor_name=actor.actor_name,
                               args=list(args)))  # fmt: skip
    db.session.commit()


def send_kept(broker: dramatiq.Broker) -> int:
    """Send the kept messages, oldest first, each under its own id; return how many went.

    A message sent whose row then fails to be deleted goes again on the next pass, with the
    same id: an errand sends its email at most once per message id.
    """
    kept = list(
        db.session.scalars(select(KeptMessage).order_by(KeptMessage.created_at).limit(KEPT_BATCH))
    )
    for row in kept:
        try:
            actor = broker.get_actor(row.actor_name)
        except ActorNotFound:  # a worker of another version: one that knows it sends it
            log.warning("kept message %s is for %s, which this worker does not run",
                        row.id, row.actor_name)  # fmt: skip
            continue
        broker.enqueue(actor.message(*row.args).copy(message_id=row.id))
        db.session.execute(delete(KeptMessage).where(KeptMessage.id == row.id))
        db.session.commit()
    return len(kept)
