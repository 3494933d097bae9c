"""The Redis broker and the middleware every message passes through.

Dramatiq binds an actor to a broker when the actor is declared, at import time, but our broker
needs the app's configuration. Actors are therefore declared on a placeholder broker and
re-declared on the real one by :func:`microblog.jobs.wiring.init_app` (the app's job types
only, see :mod:`microblog.jobs.registry`), which every entry point reaches through
``create_app`` before a worker starts consuming.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware
from flask import Flask

from microblog.extensions import db

log = logging.getLogger(__name__)

_placeholder = StubBroker()
_placeholder.add_middleware(CurrentMessage())


def placeholder_broker() -> dramatiq.Broker:
    return _placeholder


def redis_message_id(message_id: str, retries: int, delayed: bool) -> str:
    """Name a message's entry in Redis: "<task id>.<retries>.<q or d>"."""
    return f"{message_id}.{retries}.{'d' if delayed else 'q'}"


class TaskMessageIds(Middleware):
    """Give each message's Redis entry a name derived from its task, instead of a random one.

    Stock Dramatiq names each entry with a fresh uuid (a retry is enqueued again while its
    previous entry still exists); the name here is just as unique (it counts retries and tells
    the delay queue apart) but predictable, so the reaper can ask Redis about a task's message
    directly instead of scanning whole queues.
    """

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        retries = message.options.get("retries", 0)
        message.options["redis_message_id"] = redis_message_id(
            message.message_id, retries, delay is not None
        )


class AppContext(Middleware):
    """Run each message inside its own app context, so it gets its own database session."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        context = self.app.app_context()
        context.push()
        self._local.context = context

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        context = getattr(self._local, "context", None)
        if context is not None:
            self._local.context = None
            db.session.remove()
            context.pop()

    after_skip_message = after_process_message


class HandBack(Middleware):
    """Put the messages still running when this worker stops back in their queue, at once.

    Dramatiq waits ``--worker-shutdown-timeout`` for running messages, then exits with them
    unacked: they would run again only once this worker's heartbeat went stale. Handed back,
    another worker takes them now; the attempt left running here is fenced out by the new one.
    """

    def __init__(self) -> None:
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running[message.message_id] = message

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)

    after_skip_message = after_process_message

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            left = list(self._running.values())
        for message in left:
            try:
                broker.do_requeue(message.queue_name, message.options["redis_message_id"])
            except redis.RedisError as error:
                log.warning("task %s: could not hand its message back (%s); it runs again "
                            "when this worker's heartbeat is stale",
                            message.message_id, error)  # fmt: skip
            else:
                log.warning("task %s was still running at shutdown: handed back to its queue",
                            message.message_id)  # fmt: skip


class Consumer(_RedisConsumer):
    """Dramatiq's Redis consumer, taking a Redis that stops answering for the lost connection
    it is: Dramatiq then logs one line and reconnects, where a timeout (which redis-py does
    not count as a connection error) was "an unexpected error" with a traceback."""

    def __next__(self) -> Any:
        with _timeouts_as_lost_connections():
            return super().__next__()

    def ack(self, message: Any) -> None:
        with _timeouts_as_lost_connections():
            super().ack(message)

    def nack(self, message: Any) -> None:
        with _timeouts_as_lost_connections():
            super().nack(message)

    def requeue(self, messages: Any) -> None:
        with _timeouts_as_lost_connections():
            super().requeue(messages)


@contextmanager
def _timeouts_as_lost_connections() -> Iterator[None]:
    try:
        yield
    except redis.TimeoutError as error:
        raise ConnectionClosed(error) from None


class Broker(RedisBroker):
    """Dramatiq's Redis broker, with queue maintenance on a clock instead of by chance.

    Maintenance is what hands a dead worker's unacked messages to the living. Stock Dramatiq
    runs it on a random share of broker calls, so how soon a killed worker's job runs again
    depends on luck and traffic; here every worker process runs it every
    ``JOBS_MAINTENANCE_INTERVAL_MS`` (see :class:`Maintenance`), and never otherwise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._maintaining = threading.local()

    @property
    def consumer_class(self) -> type[Consumer]:
        return Consumer

    def key(self, queue_name: str) -> str:
        """Return the Redis key of a queue (``default``, ``default.DQ``, ``default.XQ``…)."""
        return f"{self.namespace}:{queue_name}"

    def _should_do_maintenance(self, command: str) -> int:
        return int(getattr(self._maintaining, "on", False))

    def run_maintenance(self) -> None:
        """Requeue the unacked messages of workers silent past the heartbeat timeout."""
        self._maintaining.on = True
        try:
            for queue in self.get_declared_queues():
                for name in (queue, dq_name(queue)):
                    self.do_fetch(name, 0)  # fetches nothing; the dispatch does the maintenance
        finally:
            self._maintaining.on = False
