"""Prometheus counters: what each process counts (tasks started and ended, events published
and delivered, open streams).

Under gunicorn each worker process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py names one); ``GET /metrics``
(:mod:`microblog.ops.prometheus`) adds them up, and worker hosts serve theirs on an address of
their own (:mod:`microblog.jobs.worker.metrics`).
"""

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
    "microblog_events_published_total", "Events published on the live channel, by type.", ["type"]
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


def task_ended(task: Any) -> None:
    """Count a task that just reached its final status, and how long its user waited."""
    status = str(task.status)
    TASKS_ENDED.labels(task.name, status).inc()
    if task.finished_at and task.created_at:
        waited = (task.finished_at - task.created_at).total_seconds()
        TASK_DURATION.labels(task.name, status).observe(max(0.0, waited))
