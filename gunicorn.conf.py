"""gunicorn settings for microblog; every value can be overridden from the environment.

gevent workers are required: each Server-Sent Events stream holds its connection open, and a
greenlet per connection keeps thousands of them cheap.
"""

import os
import shutil
import tempfile

wsgi_app = "wsgi:app"
bind = os.environ.get("MICROBLOG_BIND", "127.0.0.1:" + os.environ.get("PORT", "8000"))
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Concurrent connections per worker, open event streams included: ten thousand streams per
# process (a stream holds no Redis connection of its own; its memory is in
# docs/performance.md) and room beside them for page requests, which a worker with every slot
# held by a stream would not accept.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "12000"))
# Streams end themselves well before this; it only bounds a wedged worker.
timeout = 60
graceful_timeout = 10
keepalive = 5
# Logs go to stdout/stderr, where process managers and containers collect them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Behind a proxy, trust its X-Forwarded-* headers only from the addresses given.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app is served at the root: no proxy may move it (a SCRIPT_NAME header from a client on
# a trusted address was a server error that echoed the header back).
forwarder_headers = ""
# gunicorn's control socket (for `gunicornc`) defaults to one fixed path per user, which two
# servers on one machine would fight over: off unless a path of its own is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


# Metrics: every worker process writes its samples to files here, and /metrics adds them up.
# prometheus_client reads this when first imported, so it is set before any worker loads the app.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="microblog-metrics-")


def _raise_open_files_limit(needed: int) -> None:
    """Raise this process's open-files limit (inherited by the workers) to ``needed``, as far
    as the hard limit allows: each connection is a file, and the default 1,024 would refuse
    connections long before ``worker_connections``."""
    import logging
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        logging.getLogger("gunicorn.error").warning(
            "open files are limited to %d, fewer than WORKER_CONNECTIONS (%d) needs; raise the "
            "hard limit (ulimit -Hn, or the container's nofile ulimit)",
            hard,
            needed,
        )


def on_starting(server) -> None:
    """Start counting from zero: samples of a previous server's processes are not ours."""
    _raise_open_files_limit(worker_connections + 256)  # listening socket, logs, Redis, database
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker) -> None:
    """Drop a dead worker's open-stream count (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker) -> None:
    """Keep garbage-collection pauses short however many streams are open.

    A full collection pauses every stream of the process while it walks every object it
    tracks: the loaded app's, frozen here once, and each open stream's, frozen every
    ``GC_FREEZE_SECONDS`` (0: never) by :mod:`microblog.collector`.
    """
    from microblog import collector
    from microblog.live import stream
    from microblog.posts import language

    language.warm_up()  # before the freeze: the detector's model is loaded once and kept
    interval = float(os.environ.get("GC_FREEZE_SECONDS", "1"))
    collector.start(lambda: stream.open_streams(worker.wsgi), interval)


def post_request(worker, req, environ, resp) -> None:
    """Let the worker's other connections in before this one's next request.

    A keep-alive client whose next request is already waiting is otherwise served again at
    once, without the worker ever switching greenlets: under load one connection runs many
    requests while the others wait (docs/performance.md has the tail latencies it caused).
    ``gevent.sleep(0)`` is not enough: gevent polls sockets only
    every 50 callbacks. ``idle()`` waits until the loop has no ready events, so every
    connection whose request has arrived is served first.
    """
    import gevent

    gevent.idle()
