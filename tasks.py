"""What ``dramatiq tasks`` imports: builds the app, which binds every job to its broker.

dramatiq tasks --processes 2 --threads 4      # one worker host
dramatiq tasks --queues default               # only some queues

Each worker host serves its metrics (Dramatiq's message counts and durations, and ours) on
http://127.0.0.1:9191/metrics for a Prometheus scraper on that host; ``dramatiq_prom_host``
and ``dramatiq_prom_port`` choose another address (e.g. ``0.0.0.0`` on a private network).
"""

import os

# The worker processes write their samples to files in one directory, which the metrics
# server reads. prometheus_client chooses that mode when first imported: before the app is.
from dramatiq.middleware.prometheus import DB_PATH  # noqa: E402

os.environ["PROMETHEUS_MULTIPROC_DIR"] = DB_PATH

from microblog import create_app  # noqa: E402
from microblog.jobs.worker.metrics import WorkerMetrics  # noqa: E402

app = create_app()
app.extensions["dramatiq"].add_middleware(WorkerMetrics())
