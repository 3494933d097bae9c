"""Errors that reach operators: by email to ``ADMINS``, and to Sentry when ``SENTRY_DSN`` is set.

Every ERROR line of the app's loggers (an unhandled error in a request, a job's final
failure, an errand that failed) is put on an in-memory queue by a ``QueueHandler``; a
listener thread formats it with its traceback and sends it. No request or job waits on the
mail relay, and a relay that is down costs a log line on the listener's side.

An error storm must not become a mail storm: an error is named by where it was raised and what
its log line says (not its changing details), and each name is emailed at most once per
``ERROR_MAIL_INTERVAL`` seconds, counted in Redis across every process (or, with Redis away,
in this process).
"""

import hashlib
import logging
import os
import queue
import threading
import time
import traceback
from logging.handlers import QueueHandler, QueueListener

import redis
from flask import Flask
from flask_mail import Message

from microblog import mailer, scrub
from microblog.redis_clients import broker_client

log = logging.getLogger(__name__)

LOGGERS = ("microblog", "tasks", "wsgi")  # the app's own: where requests and jobs log errors
QUEUE_LIMIT = 1_000  # records waiting to be mailed; past it they are dropped (the log has them)

_installed: "ErrorMail | None" = None


def error_name(record: logging.LogRecord) -> str:
    """Name what went wrong, the same for every occurrence of one error: the logger, the log
    line's template, the exception's type and the line that raised it."""
    parts = [record.name, str(getattr(record, "template", record.msg))]
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        frames = traceback.extract_tb(error.__traceback__)
        parts.append(type(error).__qualname__)
        if frames:
            parts.append(f"{frames[-1].filename}:{frames[-1].lineno}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


class AdminMail(logging.Handler):
    """Email each record to ``admins``, at most once per error name per ``interval``."""

    def __init__(self, app: Flask, admins: list[str], interval: int) -> None:
        super().__init__(logging.ERROR)
        self.app = app
        self.admins = admins
        self.interval = interval
        self._last_sent: dict[str, float] = {}
        self._redis = broker_client(app.config, socket_timeout=2, socket_connect_timeout=2)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def first_in_interval(self, name: str) -> bool:
        now = time.monotonic()
        if now - self._last_sent.get(name, -self.interval) < self.interval:
            return False
        self._last_sent[name] = now
        try:
            return bool(self._redis.set(f"error-mail:{name}", 1, nx=True, ex=self.interval))
        except redis.RedisError:
            return True  # counted in this process only, while Redis is away

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "error_name", None) or error_name(record)
        if not self.first_in_interval(name):
            return
        summary = record.getMessage().splitlines()[0][:120] if record.getMessage() else "error"
        host = f"{os.uname().nodename}:{os.getpid()}"
        try:
            with self.app.app_context():
                mailer.send(
                    Message(
                        subject=f"[microblog] {record.levelname}: {summary}",
                        recipients=self.admins,
                        body=f"{self.format(record)}\n\nProcess: {host}\n"
                        f"The same error is not emailed again for {self.interval} seconds.\n",
                    ),
                    purpose=mailer.Purpose.OPERATORS,
                )
        except Exception as error:  # logged below ERROR, so it is never mailed itself
            log.warning("could not email an error to ADMINS: %s: %s", type(error).__name__, error)


class ErrorMail(QueueHandler):
    """Queue ERROR records for a listener thread that mails them; started in each process on
    first use (so a forked worker gets its own)."""

    def __init__(self, target: AdminMail) -> None:
        super().__init__(queue.Queue(QUEUE_LIMIT))
        self.setLevel(logging.ERROR)
        self.target = target
        self._listener: QueueListener | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self.queue = queue.Queue(QUEUE_LIMIT)  # a fork's copy is not its parent's
                    self._listener = QueueListener(self.queue, self.target)
                    self._listener.start()
                    self._pid = os.getpid()
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            pass

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Name the error before the record is flattened for the queue: flattening writes
        the message out with its details (the URL…) and drops the exception, which would make
        every occurrence a new error."""
        name = error_name(record)
        prepared = super().prepare(record)
        prepared.error_name = name
        return prepared

    def stop(self) -> None:
        """Mail what is queued, then stop the listener."""
        if self._listener is not None and self._pid == os.getpid():
            self._listener.stop()
        self._listener, self._pid = None, 0


def init_app(app: Flask) -> None:
    """Send the app's errors to ``ADMINS`` and Sentry, as configured."""
    global _installed
    if _installed is not None:  # one per process: the last app built decides
        uninstall()
    if app.config["ADMINS"]:
        target = AdminMail(app, app.config["ADMINS"], app.config["ERROR_MAIL_INTERVAL"])
        _installed = ErrorMail(target)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(_installed)
    if app.config["SENTRY_DSN"]:
        init_sentry(app)


def uninstall() -> None:
    """Stop mailing errors (mailing first those already queued)."""
    global _installed
    if _installed is None:
        return
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(_installed)
    _installed.stop()
    _installed = None


def init_sentry(app: Flask) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=app.config["SENTRY_DSN"],
        environment=app.config["MICROBLOG_ENV"],
        integrations=[FlaskIntegration(), DramatiqIntegration()],
        # No personal data, request body or local variable leaves; what does is scrubbed.
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub.scrub_event,
        before_breadcrumb=scrub.scrub_breadcrumb,
    )
