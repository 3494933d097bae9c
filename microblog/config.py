"""Configuration: defaults, then the environment, then an explicit mapping (tests)."""

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask

# Environment variables that are read as integers or booleans rather than strings.
_INTEGERS = {
    "MAIL_PORT",
    "POSTS_PER_PAGE",
    "EXPORT_ATTACHMENT_LIMIT",
    "EXPORT_RETENTION_DAYS",
    "JOBS_HEARTBEAT_TIMEOUT_MS",
    "JOBS_MAINTENANCE_INTERVAL_MS",
    "MAIL_TIMEOUT",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "JOBS_REAPER_INTERVAL",
    "JOBS_REAPER_GRACE",
    "TASK_RETENTION_DAYS",
    "FAILED_TASK_RETENTION_DAYS",
    "SSE_HEARTBEAT_SECONDS",
    "SSE_MAX_STREAM_SECONDS",
    "SSE_STREAM_QUEUE_LIMIT",
    "MAX_CONTENT_LENGTH",
    "PROXY_COUNT",
    "PASSWORD_RESET_MAX_AGE",
    "ERROR_MAIL_INTERVAL",
    "MAIL_LIMIT_PER_ADDRESS_HOUR",
    "MAIL_LIMIT_PER_ADDRESS_DAY",
    "CONFIRM_MAX_AGE",
    "SEARCH_TIMEOUT_MS",
}
_BOOLEANS = {
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_SUPPRESS_SEND",
    "HTTPS_ONLY",
    "EVENTS_REDIS_CLUSTER",
}
# Read as comma-separated lists.
_LISTS = {"JOB_MODULES", "ADMINS", "REDIS_SENTINELS"}
_STRINGS = {
    "MICROBLOG_ENV",
    "SECRET_KEY",
    "REDIS_URL",
    "EVENTS_REDIS_URL",
    "REDIS_SENTINEL_MASTER",
    "MAIL_SERVER",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_DEFAULT_SENDER",
    "MAIL_CA_FILE",
    "PUBLIC_URL",
    "LOG_LEVEL",
    "LOGIN_LIMIT_PER_ACCOUNT",
    "LOGIN_LIMIT_PER_ADDRESS",
    "REGISTER_LIMIT_PER_ADDRESS",
    "RESET_LIMIT_PER_ACCOUNT",
    "RESET_LIMIT_PER_ADDRESS",
    "MESSAGE_LIMIT_PER_USER",
    "EXPORT_LIMIT_PER_USER",
    "SEARCH_LIMIT_PER_CLIENT",
    "CONFIRM_LIMIT_PER_ACCOUNT",
    "METRICS_TOKEN",
    "SENTRY_DSN",
}


def environment_variables() -> set[str]:
    """Return the name of every variable :func:`from_environment` reads."""
    return _STRINGS | _INTEGERS | _BOOLEANS | _LISTS | {"DATABASE_URL"}


def defaults(instance_path: str) -> dict[str, Any]:
    """Return the settings used when nothing else is said: safe for local use."""
    return {
        # "production" turns a missing SECRET_KEY into a startup error.
        "MICROBLOG_ENV": "development",
        # Signs sessions and CSRF tokens; the development value is public on purpose.
        "SECRET_KEY": None,
        # SQLite file under instance/ so a fresh checkout needs no database server.
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.join(instance_path, "microblog.sqlite"),
        # The broker's Redis: job queues, throttles, errand and alert marks; and the events'
        # unless EVENTS_REDIS_URL is set (see microblog/redis_clients.py).
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        # The live events' Redis (pub/sub and event logs); None: REDIS_URL's.
        "EVENTS_REDIS_URL": None,
        # The events' Redis is a Redis Cluster (EVENTS_REDIS_URL names one of its nodes).
        "EVENTS_REDIS_CLUSTER": False,
        # Redis Sentinel: "host:port" of each sentinel, and the name of the master they watch;
        # the broker (and the events, without a URL of their own) follow its failovers.
        "REDIS_SENTINELS": [],
        "REDIS_SENTINEL_MASTER": "mymaster",
        # Outgoing mail; the run command points these at a local catcher.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 8025,
        "MAIL_USE_TLS": False,
        "MAIL_USE_SSL": False,
        "MAIL_USERNAME": None,
        "MAIL_PASSWORD": None,
        "MAIL_DEFAULT_SENDER": "microblog <no-reply@microblog.localhost>",
        # A PEM bundle of the certificate authorities a private relay's certificate is checked
        # against, besides the system's; TLS to the relay is always verified.
        "MAIL_CA_FILE": None,
        # Most emails any one address gets from the site, whatever sends them, in a clock hour
        # and in a UTC day; past them, mail to it is dropped (see microblog.mailer).
        "MAIL_LIMIT_PER_ADDRESS_HOUR": 10,
        "MAIL_LIMIT_PER_ADDRESS_DAY": 30,
        # Seconds an address confirmation link works.
        "CONFIRM_MAX_AGE": 48 * 3600,
        # Absolute base of links in emails (the worker has no request to learn it from).
        "PUBLIC_URL": "http://127.0.0.1:8000",
        # The bearer token a Prometheus scraper sends to GET /metrics; unset, /metrics is a 404.
        "METRICS_TOKEN": None,
        # Posts on one page of a timeline, explore or profile.
        "POSTS_PER_PAGE": 25,
        # Archives up to this many bytes of JSON are attached to the email as well as linked.
        "EXPORT_ATTACHMENT_LIMIT": 5 * 1024 * 1024,
        # Days an export archive stays downloadable before the reaper deletes it.
        "EXPORT_RETENTION_DAYS": 7,
        # A worker silent this long is presumed dead and its unacked messages are redelivered.
        # Workers beat about once a second; a false suspicion costs a repeated attempt, never
        # a double result (attempts are fenced).
        "JOBS_HEARTBEAT_TIMEOUT_MS": 10_000,
        # How often each worker process looks for dead workers' messages to redeliver.
        "JOBS_MAINTENANCE_INTERVAL_MS": 1_000,
        # Seconds the mail relay may take for any one step (connect, each reply, each write).
        "MAIL_TIMEOUT": 30,
        # PostgreSQL: longest statement; lock waits are capped at a sixth of it, and a session
        # idle in a transaction for five times as long is ended. SQLite waits for locks a sixth.
        "DATABASE_STATEMENT_TIMEOUT_MS": 60_000,
        # Longest a search may keep the database busy; past it the page says the search was
        # too broad (a few queries, such as "word -word", match nothing slowly).
        "SEARCH_TIMEOUT_MS": 2_000,
        # Seconds between two reaper passes in each worker process.
        "JOBS_REAPER_INTERVAL": 60,
        # Seconds an active task must sit untouched before the reaper may close it.
        "JOBS_REAPER_GRACE": 120,
        # Days a succeeded or cancelled task's row is kept (its archive goes with it), and a
        # failed one's (longer: operators read failures); the reaper deletes older ones.
        "TASK_RETENTION_DAYS": 30,
        "FAILED_TASK_RETENTION_DAYS": 90,
        # The modules that declare the product's job types (see microblog.jobs.registry):
        # web and workers load the same list. A new job module adds one line here.
        "JOB_MODULES": ["microblog.exports.jobs", "microblog.stats.jobs"],
        # Seconds between comment lines on an idle event stream.
        "SSE_HEARTBEAT_SECONDS": 15,
        # Seconds after which a stream is closed; the browser reconnects and resumes.
        "SSE_MAX_STREAM_SECONDS": 300,
        # Events waiting for one stream's client; a client this far behind has stopped
        # reading: its stream is closed, and the browser resumes from the log.
        "SSE_STREAM_QUEUE_LIMIT": 100,
        # Level of the app's own log lines (gunicorn reads the same variable for its own).
        "LOG_LEVEL": "info",
        # Secure cookies and HSTS; None follows MICROBLOG_ENV (on in production). Turn it off
        # only where the site is really served over plain HTTP.
        "HTTPS_ONLY": None,
        # Proxies in front of the app whose X-Forwarded-For is believed (docker-compose: 1).
        "PROXY_COUNT": 0,
        # Largest request body accepted; every form here is far smaller. Bigger is a 413.
        "MAX_CONTENT_LENGTH": 64 * 1024,
        # Cookies go along with top-level navigation only, never with another site's requests.
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        # How long "Remember me" (and any sign-in) lasts before signing in again.
        "REMEMBER_COOKIE_DURATION": timedelta(days=30),
        "REMEMBER_COOKIE_NAME": "remember_token",
        # Throttles, in the limits library's notation, counted in Redis across processes.
        "LOGIN_LIMIT_PER_ACCOUNT": "10 per minute",
        "LOGIN_LIMIT_PER_ADDRESS": "60 per minute",
        "REGISTER_LIMIT_PER_ADDRESS": "10 per hour",
        # Password reset links asked for one address, and from one client address.
        "RESET_LIMIT_PER_ACCOUNT": "5 per hour",
        "RESET_LIMIT_PER_ADDRESS": "20 per hour",
        # Private messages one user may send.
        "MESSAGE_LIMIT_PER_USER": "30 per minute",
        # Exports one user may start.
        "EXPORT_LIMIT_PER_USER": "10 per hour",
        # Searches from one client address (each may keep the database busy for its budget).
        "SEARCH_LIMIT_PER_CLIENT": "60 per minute",
        # Confirmation links one account may ask for again, and changes of address.
        "CONFIRM_LIMIT_PER_ACCOUNT": "5 per hour",
        # Seconds a password reset link works (and only until the password changes).
        "PASSWORD_RESET_MAX_AGE": 30 * 60,
        # Addresses that get every unhandled error by email, at most one per distinct error
        # per ERROR_MAIL_INTERVAL seconds; none when empty.
        "ADMINS": [],
        "ERROR_MAIL_INTERVAL": 600,
        # Errors also go to Sentry when set (sentry-sdk's Flask and Dramatiq integrations).
        "SENTRY_DSN": None,
        "THROTTLE_ENABLED": True,
        # Bootstrap's CSS and JS come from the app itself, never a CDN.
        "BOOTSTRAP_SERVE_LOCAL": True,
        # SQL parameters (password hashes, message bodies) never appear in an error's text.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
    }


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the settings the environment gives, converted to their types."""
    found: dict[str, Any] = {}
    for key in _STRINGS & environ.keys():
        found[key] = environ[key]
    for key in _INTEGERS & environ.keys():
        found[key] = int(environ[key])
    for key in _BOOLEANS & environ.keys():
        found[key] = environ[key].strip().lower() in {"1", "true", "yes", "on"}
    for key in _LISTS & environ.keys():
        found[key] = [item.strip() for item in environ[key].split(",") if item.strip()]
    if "DATABASE_URL" in environ:
        found["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(environ["DATABASE_URL"])
    return found


def normalise_database_url(url: str) -> str:
    """Point PostgreSQL URLs at the psycopg 3 driver, the one requirements.txt installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Fill ``app.config`` and refuse to start production without a secret key."""
    app.config.from_mapping(defaults(app.instance_path))
    app.config.from_mapping(from_environment(os.environ))
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config["SECRET_KEY"]:
        if app.config["MICROBLOG_ENV"] == "production":
            raise RuntimeError("SECRET_KEY must be set when MICROBLOG_ENV is production.")
        app.config["SECRET_KEY"] = "development-only-not-secret"
    derive(app.config)


def derive(config: dict[str, Any]) -> None:
    """Fill the settings that follow from others."""
    if config["HTTPS_ONLY"] is None:
        config["HTTPS_ONLY"] = config["MICROBLOG_ENV"] == "production"
    config["SESSION_COOKIE_SECURE"] = config["REMEMBER_COOKIE_SECURE"] = config["HTTPS_ONLY"]
    config.setdefault("THROTTLE_STORAGE_URI", throttle_storage(config))
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        config["SQLALCHEMY_ENGINE_OPTIONS"] = postgres_engine_options(
            config["SQLALCHEMY_ENGINE_OPTIONS"], config["DATABASE_STATEMENT_TIMEOUT_MS"]
        )


def throttle_storage(config: dict[str, Any]) -> str:
    """Return the throttles' storage: the broker's Redis, through the sentinels if it has them."""
    if not config["REDIS_SENTINELS"]:
        return config["REDIS_URL"]
    hosts = ",".join(item.strip() for item in config["REDIS_SENTINELS"])
    return f"redis+sentinel://{hosts}/{config['REDIS_SENTINEL_MASTER']}"


def postgres_engine_options(options: dict[str, Any], statement_ms: int) -> dict[str, Any]:
    """Bound every wait a PostgreSQL session can make: statements, locks, idle transactions."""
    settings = {
        "statement_timeout": statement_ms,
        "lock_timeout": statement_ms // 6,
        "idle_in_transaction_session_timeout": statement_ms * 5,
    }
    flags = " ".join(f"-c {name}={value}" for name, value in settings.items())
    connect_args = {**options.get("connect_args", {}), "options": flags, "connect_timeout": 10}
    return {**options, "connect_args": connect_args}
