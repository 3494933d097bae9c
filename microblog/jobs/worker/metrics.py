"""Worker metrics: Dramatiq's Prometheus middleware, served on an address of the worker host.

Only ``dramatiq tasks`` loads this (tasks.py), after naming the directory where its processes
write their samples. The server listens on ``dramatiq_prom_host``:``dramatiq_prom_port``,
127.0.0.1:9191 unless they say otherwise (Dramatiq's own default host is every interface).
"""

import logging
import os
from http.server import HTTPServer

from dramatiq.middleware import prometheus
from prometheus_client import CollectorRegistry, MetricsHandler, multiprocess

log = logging.getLogger(__name__)


class WorkerMetrics(prometheus.Prometheus):
    """Dramatiq's Prometheus middleware (message counts, errors, retries, durations), served
    by :func:`serve_worker_metrics`, which also serves microblog.metrics' counters."""

    @property
    def forks(self) -> list:
        return [serve_worker_metrics]


def serve_worker_metrics() -> int:
    """Serve the samples of every worker process of this host (a process of its own).

    It runs in a process Dramatiq forks from its main process, which never imports tasks.py:
    the address is read here. When another ``dramatiq tasks`` on the host holds that port,
    this one says so in its log and stops; its processes' samples are in the same directory
    (``dramatiq_prom_db``), so the other serves them.
    """
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=prometheus.DB_PATH)
    address = (os.environ.get("dramatiq_prom_host", "127.0.0.1"), prometheus.HTTP_PORT)
    try:
        server = HTTPServer(address, MetricsHandler.factory(registry))
    except OSError as error:
        log.warning("worker metrics are not served on %s:%d: %s", *address, error)
        return 0
    log.info("worker metrics on http://%s:%d/metrics", *server.server_address[:2])
    server.serve_forever()
    return 0
