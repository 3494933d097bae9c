"""``GET /metrics`` for a Prometheus scraper: every process's counters, and the state of the
whole service (queue depths, live workers, active tasks) read at scrape time from Redis and
the database.

It exists only when ``METRICS_TOKEN`` is set (404 to every method otherwise); the scraper then
sends it as a bearer token. Under gunicorn it adds up the sample files of every web process
(``PROMETHEUS_MULTIPROC_DIR``), whichever answers.
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
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db
from microblog.jobs.models import ACTIVE_STATUSES, Task
from microblog.jobs.worker.liveness import live_workers, queue_stats

log = logging.getLogger(__name__)


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


def has_metrics_token() -> bool:
    """Tell whether the request carries the scraper's bearer token (none is set: no one does)."""
    token = current_app.config["METRICS_TOKEN"]
    offered = request.headers.get("Authorization", "").encode()
    return bool(token) and hmac.compare_digest(offered, f"Bearer {token}".encode())


@bp.route("/metrics")
def metrics() -> Response:
    if not has_metrics_token():
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
