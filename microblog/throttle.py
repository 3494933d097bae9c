"""Throttles on sign-in and registration, counted in Redis and so shared by every process.

Built on ``limits``, the library under Flask-Limiter, rather than on Flask-Limiter itself: that
extension keeps its storage, strategy and on/off switch on one module-level object, so every
app built in a process (the tests build hundreds) would share, and overwrite, one state.
"""

import logging
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import Flask, current_app, request
from flask_babel import ngettext
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from microblog.redis_clients import master_settings, sentinel_options

log = logging.getLogger(__name__)


def client_address() -> str:
    """Return the client's address (the proxies' X-Forwarded-For under PROXY_COUNT)."""
    return request.remote_addr or "unknown"


def hit(setting: str, key: str) -> None:
    """Count one attempt against the limit in config ``setting``; raise 429 past it.

    With Redis unreachable the attempt is let through and logged: the site must still work.
    """
    config = current_app.config
    if not config["THROTTLE_ENABLED"]:
        return
    limit = parse(config[setting])
    window: MovingWindowRateLimiter = current_app.extensions["microblog.throttle"]
    try:
        if window.hit(limit, setting, key):
            return
        reset_at = window.get_window_stats(limit, setting, key).reset_time
    except redis.RedisError as error:
        log.warning("throttle %s not applied, Redis is unreachable: %s", setting, error)
        return
    seconds = max(1, math.ceil(reset_at - time.time()))
    raise TooManyRequests(
        ngettext(
            "Too many attempts. Please wait %(num)d second and try again.",
            "Too many attempts. Please wait %(num)d seconds and try again.",
            seconds,
        ),
        retry_after=seconds,
    )


def limit(setting: str, key: Callable[[], str] = client_address):
    """Throttle the view's POSTs by the limit in config ``setting``, counted per ``key()``."""

    def decorator(view):
        @wraps(view)
        def throttled(*args, **kwargs):
            if request.method == "POST":
                hit(setting, key())
            return view(*args, **kwargs)

        return throttled

    return decorator


def through_sentinels(url: str) -> dict[str, Any]:
    """Return limits' options to reach the master the sentinels name as the broker does: with
    ``url``'s database and credentials, given to the master only (limits would give the
    sentinels the password too), the sentinels asked briefly (limits sets no timeout), and
    every count read from the master (a replica's may lag)."""
    return master_settings(url) | {
        "sentinel_kwargs": sentinel_options() | {"username": None, "password": None},
        "use_replicas": False,
    }


def init_app(app: Flask) -> None:
    uri = app.config["THROTTLE_STORAGE_URI"]
    options: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    if uri.startswith("redis+sentinel"):
        options |= through_sentinels(app.config["REDIS_URL"])
    storage = storage_from_string(uri, **options)
    # A moving window counts the last minute, not the clock's: ten attempts cannot straddle a
    # minute boundary to get ten more at once.
    app.extensions["microblog.throttle"] = MovingWindowRateLimiter(storage)
