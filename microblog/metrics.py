"""Prometheus metrics: what each process counts, and ``GET /metrics`` for a scraper.

Each process counts what it does (tasks started and ended, events published and delivered,
open streams). Under gunicorn each worker process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py names one), and ``/metrics`` adds up the
files of every process, whichever answers. The state of the whole service (queue depths,
live workers, active tasks) is read at scrape time instead, from Redis and the database.

``/metrics`` exists only when ``METRICS_TOKEN`` is set (404 to every method otherwise); the
scraper then sends it as a bearer token. Worker hosts serve theirs on an address of their own (see
:mod:`microblog.jobs.worker_metrics`).
"""

import hmac
import logging
import os
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db
from microblog.jobs.broker import live_workers, queue_stats
from microblog.jobs.models import ACTIVE_STATUSES, Task

log = logging.getLogger(__name__)

TASK_ATTEMPTS = Counter(
    "microblog_task_attempts_total", "Attempts of tasks started by workers.", ["job"]
)
TASKS_ENDED = Counter(
    "microblog_tasks_ended_total",
    "Tasks that reached a final status (succeeded, failed or cancelled).",
    ["job", "status"],
)
TASK_DURATION = Histogram(
    "microblog_task_duration_seconds",
    "Time from a task's creation to its final status: what its user waited.",
    ["job", "status"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
EVENTS_PUBLISHED = Counter(
    "microblog_events_published_total", "Task events published, by type.", ["type"]
)
STREAMS_OPEN = Gauge(
    "microblog_sse_streams_open",
    "Event streams open in web processes.",
    multiprocess_mode="livesum",
)
STREAMS_OVERFLOWED = Counter(
    "microblog_sse_streams_overflowed_total",
    "Event streams closed because their client stopped reading (queue full).",
)
EVENTS_DELIVERED = Counter(
    "microblog_sse_events_delivered_total", "Events handed to open event streams."
)
# Against the events published, how many copies Redis sends to web processes: about one per
# event when each process subscribes only its own streams' channels.
EVENTS_RECEIVED = Counter(
    "microblog_sse_events_received_total",
    "Events web processes received from Redis, whether or not a stream there wanted them.",
)


def task_ended(task: Task) -> None:
    """Count a task that just reached its final status, and how long its user waited."""
    status = str(task.status)
    TASKS_ENDED.labels(task.name, status).inc()
    if task.finished_at and task.created_at:
        waited = (task.finished_at - task.created_at).total_seconds()
        TASK_DURATION.labels(task.name, status).observe(max(0.0, waited))


class ServiceState(Collector):
    """The state every process sees alike, read when scraped: queues, workers, active tasks."""

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "microblog_tasks_active", "Tasks queued or running.", labels=["job", "status"]
        )
        try:
            counts = db.session.execute(
                select(Task.name, Task.status, func.count())
                .where(Task.status.in_(ACTIVE_STATUSES))
                .group_by(Task.name, Task.status)
            ).all()
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("metrics: the database did not answer (%s); no task metrics", error)
        else:
            for name, status, count in counts:
                active.add_metric([name, str(status)], count)
            yield active
        broker = current_app.extensions["dramatiq"]
        try:
            queues, workers = queue_stats(broker), live_workers(broker)
        except redis.RedisError as error:
            log.warning("metrics: Redis did not answer (%s); no queue metrics", error)
            return
        messages = GaugeMetricFamily(
            "microblog_queue_messages", "Messages in a queue.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "microblog_queue_oldest_message_age_seconds",
            "Age of the oldest message ready in a queue (0 when it is empty).",
            labels=["queue"],
        )
        for queue in queues:
            for state, count in (("ready", queue.ready), ("delayed", queue.delayed),
                                 ("dead", queue.dead)):  # fmt: skip
                messages.add_metric([queue.name, state], count)
            oldest.add_metric([queue.name], queue.oldest_age or 0)
        yield messages
        yield oldest
        yield GaugeMetricFamily(
            "microblog_workers_live", "Worker processes heard from lately.", value=len(workers)
        )


bp = Blueprint("metrics", __name__)


@bp.route("/metrics")
def metrics() -> Response:
    token = current_app.config["METRICS_TOKEN"]
    offered = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(offered, f"Bearer {token}".encode()):
        return Response(
            "A bearer token is required.\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:  # one process (the development server, tests)
        processes = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(ServiceState())
    body = generate_latest(processes) + generate_latest(state)
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
