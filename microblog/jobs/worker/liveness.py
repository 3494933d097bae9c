"""Which worker processes are alive and what waits in the queues, as every host can see it.

Each worker process runs :class:`Maintenance` on a clock: the broker's queue maintenance
(which hands a dead worker's unacked messages to the living), then a beat in Redis saying
which job types it runs. Web processes, the admin page, ``flask jobs status``, ``/readyz``
and ``/metrics`` read the beats with :func:`live_workers`.
"""

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.middleware import Middleware

from microblog.jobs import registry
from microblog.jobs.worker.broker import Broker

log = logging.getLogger(__name__)


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
