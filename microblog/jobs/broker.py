"""Dramatiq glue: one Redis broker per process, and each message in a fresh app context.

Dramatiq binds an actor to a broker when the actor is declared, at import time, but our broker
needs the app's configuration. Actors are therefore declared on a placeholder broker and
re-declared on the real one by :func:`init_app` (the app's job types only, see
:mod:`microblog.jobs.registry`), which every entry point reaches through ``create_app`` before
a worker starts consuming.
"""

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware
from flask import Flask

from microblog.extensions import db
from microblog.jobs import registry

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


class Periodic(Middleware):
    """Call :meth:`tick` on a thread of each worker process, from its boot to its shutdown.

    The first tick comes at boot; then one every ``interval`` seconds.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()

    def tick(self, broker: dramatiq.Broker) -> None:
        raise NotImplementedError

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        name = type(self).__name__.lower()
        threading.Thread(target=self._loop, args=(broker,), name=name, daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _loop(self, broker: dramatiq.Broker) -> None:
        while True:
            self.tick(broker)
            if self._stop.wait(self.interval):
                return


# Worker processes by "host:pid", scored by their last maintenance tick (ms): who is alive.
# Dramatiq's own heartbeats cannot tell: every broker call beats, a web process's enqueue too.
WORKERS_KEY = "microblog:workers"
WORKER_JOBS_KEY = "microblog:worker-jobs:{}"  # the job types a worker process knows
FORGET_AFTER_MS = 24 * 3600 * 1000  # a worker silent this long is dropped from both


class LiveWorker(NamedTuple):
    name: str  # "host:pid"
    beat_ms: float  # its last tick, ms since the epoch
    job_types: list[str]  # the job types it runs (its JOB_MODULES')


def live_workers(broker: RedisBroker) -> list[LiveWorker]:
    """Return the worker processes heard from within the heartbeat timeout."""
    now_ms = time.time() * 1000
    beats = broker.client.zrangebyscore(
        WORKERS_KEY, now_ms - broker.heartbeat_timeout, "+inf", withscores=True
    )
    names = [name.decode() for name, _ in beats]
    known = broker.client.mget([WORKER_JOBS_KEY.format(name) for name in names]) if names else []
    return [
        LiveWorker(name, beat, (types or b"").decode().split())
        for name, (_, beat), types in zip(names, beats, known, strict=True)
    ]


def unknown_job_types(workers: list[LiveWorker]) -> list[str]:
    """Return this app's job types that none of ``workers`` runs: a deploy half done."""
    running = {name for worker in workers for name in worker.job_types}
    return [name for name in registry.job_types() if name not in running]


@dataclass(frozen=True)
class QueueStats:
    """What waits in one queue: ready and delayed messages, dead letters, the oldest's age."""

    name: str
    ready: int
    delayed: int
    dead: int
    oldest_age: float | None  # seconds since the oldest ready message was sent


def queue_stats(broker: Broker) -> list[QueueStats]:
    """Return the state of every declared queue, read from Redis (a few O(1) reads each)."""
    client = broker.client
    stats = []
    for queue in sorted(broker.get_declared_queues()):
        key = broker.key(queue)
        oldest_age = None
        oldest = client.lindex(key, 0)
        body = client.hget(f"{key}.msgs", oldest) if oldest is not None else None
        if body:
            sent_ms = json.loads(body)["message_timestamp"]
            oldest_age = max(0.0, time.time() - sent_ms / 1000)
        delayed = client.hlen(broker.key(dq_name(queue)) + ".msgs")
        dead = client.zcard(broker.key(xq_name(queue)))
        stats.append(QueueStats(queue, client.llen(key), delayed, dead, oldest_age))
    return stats


class Maintenance(Periodic):
    """Run the broker's maintenance every ``interval_ms`` in each worker process, and say so."""

    def __init__(self, interval_ms: int) -> None:
        super().__init__(interval_ms / 1000)
        self.name = ""  # this process's, set at boot

    def tick(self, broker: Broker) -> None:
        try:
            broker.run_maintenance()
            now_ms = int(time.time() * 1000)
            job_types = " ".join(sorted(broker.get_declared_actors()))
            with broker.client.pipeline() as pipeline:
                pipeline.zadd(WORKERS_KEY, {self.name: now_ms})
                pipeline.set(WORKER_JOBS_KEY.format(self.name), job_types, px=FORGET_AFTER_MS)
                pipeline.zremrangebyscore(WORKERS_KEY, 0, now_ms - FORGET_AFTER_MS)  # long gone
                pipeline.execute()
        except redis.RedisError as error:
            log.warning("queue maintenance failed (%s); trying again", error)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        super().after_worker_boot(broker, worker)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        super().before_worker_shutdown(broker, worker)
        try:
            broker.client.zrem(WORKERS_KEY, self.name)
            broker.client.delete(WORKER_JOBS_KEY.format(self.name))
        except redis.RedisError:
            pass  # it will age out


def make_broker(app: Flask) -> Broker:
    """Build the Redis broker from the app's configuration."""
    # Every broker call is a short script: ten seconds without an answer is a dead link.
    client = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_timeout=10, socket_connect_timeout=5
    )
    broker = Broker(client=client, heartbeat_timeout=app.config["JOBS_HEARTBEAT_TIMEOUT_MS"])
    broker.add_middleware(TaskMessageIds())
    broker.add_middleware(Maintenance(app.config["JOBS_MAINTENANCE_INTERVAL_MS"]))
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(AppContext(app))
    broker.add_middleware(HandBack())
    return broker


def init_app(app: Flask) -> Broker:
    """Make the app's broker this process's broker and bind the app's job types to it."""
    from microblog.jobs.reaper import Reaper
    from microblog.jobs.runner import UnknownJobTypes

    broker = make_broker(app)
    broker.add_middleware(Reaper(app))
    broker.add_middleware(UnknownJobTypes(app))
    dramatiq.set_broker(broker)
    for job_type in registry.load(app).values():
        job_type.actor.broker = broker
        broker.declare_actor(job_type.actor)
    app.extensions["dramatiq"] = broker
    return broker
