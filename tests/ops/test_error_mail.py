"""Errors reach operators: one email per distinct error to ADMINS, sent off the request's
thread; and Sentry, when configured, gets them too."""

import asyncio
import json
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask

from devkit.services import MailCatcher, wait_until
from microblog import alerts, create_app
from microblog.config import defaults
from microblog.extensions import db
from microblog.jobs.attempts import Attempt
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.worker.runner import job
from tests.support import ROOT
from tests.support.data import task_row

ADMIN = "ops@example.com"


@job(description="Breaking down", max_retries=0)
def break_down(task: Task, attempt: Attempt, progress: ProgressReporter) -> None:
    raise KeyError("a bug in the job")


class GatedMailCatcher(MailCatcher):
    """A mail catcher that holds each message's data until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.holding = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd API
        self.holding.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 60)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def relay() -> Iterator[GatedMailCatcher]:
    catcher = GatedMailCatcher().start()
    yield catcher
    catcher.gate.set()
    catcher.stop()


@pytest.fixture
def app_config(app_config, relay):
    return {**app_config, "ADMINS": [ADMIN], "MAIL_PORT": relay.port, "MAIL_TIMEOUT": 60,
            "JOB_MODULES": [*defaults("")["JOB_MODULES"], __name__]}  # fmt: skip


@pytest.fixture
def app(app) -> Iterator[Flask]:
    def boom():
        return {"answer": 1 / 0}

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/boom/<int:n>", "boom_n", lambda n: boom())
    yield app
    alerts.uninstall()


def to_admins(relay: MailCatcher) -> list:
    return [message for message in relay.messages if message["To"] == ADMIN]


def test_a_burst_of_one_error_is_one_email_sent_off_the_request_thread(app, relay):
    client = app.test_client()
    statuses: list[int] = []
    # Given a relay holding every email's data until told
    # When a request fails
    first = threading.Thread(target=lambda: statuses.append(client.get("/boom").status_code))
    first.start()
    first.join(10)
    # Then it answers while its email is still held at the relay
    assert not first.is_alive(), "the failing request waited on the mail relay"
    relay.holding.wait(10)
    assert relay.holding.is_set(), "no email reached the relay"
    # And 49 more of the same error answer too, while the email is still held
    statuses += [client.get("/boom").status_code for _ in range(49)]
    assert statuses == [500] * 50
    assert to_admins(relay) == []
    # When the relay lets the data through and the queue is drained
    relay.gate.set()
    wait_until(lambda: to_admins(relay), 30, "the error email")
    alerts.uninstall()
    # Then the admins got exactly one email, with the traceback
    (email,) = to_admins(relay)
    body = email.get_payload(decode=True).decode()
    assert "ZeroDivisionError" in body and "Traceback" in body and "GET /boom" in body
    assert "Unhandled error on GET /boom" in email["Subject"]


def test_one_error_on_many_urls_is_one_email(app, relay):
    relay.gate.set()
    client = app.test_client()
    # When the same bug fails thirty-two different URLs
    assert [client.get(f"/boom/{n}").status_code for n in range(32)] == [500] * 32
    wait_until(lambda: to_admins(relay), 30, "the error email")
    alerts.uninstall()  # mails whatever is still queued
    # Then it is one error, and one email
    assert len(to_admins(relay)) == 1


def test_every_process_shares_one_interval_per_error(app):
    # Given two processes' mailers (each with its own memory) on one Redis
    first, second = (alerts.AdminMail(app, [ADMIN], 600) for _ in range(2))
    # Then only the first to see an error mails it, until the interval ends
    assert first.first_in_interval("an error") is True
    assert second.first_in_interval("an error") is False
    assert first.first_in_interval("an error") is False
    assert second.first_in_interval("another error") is True


def test_a_different_error_is_emailed_too(app, relay):
    relay.gate.set()
    client = app.test_client()
    client.get("/boom")
    with app.app_context():
        app.logger.error("the disk is full")
    wait_until(lambda: len(to_admins(relay)) >= 2, 30, "two error emails")
    alerts.uninstall()
    assert len(to_admins(relay)) == 2


def test_a_job_s_final_failure_is_emailed_with_its_traceback(app, make_user, relay):
    relay.gate.set()
    user_id = make_user("alice")
    with app.app_context():
        task_id = launch(break_down, user_id).id
        break_down(task_id)  # called directly: this attempt is the last
    assert task_row(app, task_id).status == "failed"
    wait_until(lambda: to_admins(relay), 30, "the job's error email")
    alerts.uninstall()
    (email,) = to_admins(relay)
    body = email.get_payload(decode=True).decode()
    assert "KeyError: 'a bug in the job'" in body and f"task {task_id}" in body


def test_no_admins_no_handler(app_config):
    app = create_app({**app_config, "ADMINS": []})
    try:
        import logging

        assert not any(
            isinstance(handler, alerts.ErrorMail)
            for handler in logging.getLogger("microblog").handlers
        )
    finally:
        with app.app_context():
            db.engine.dispose()


class SentryIngest(BaseHTTPRequestHandler):
    """Keep the bodies of what a Sentry SDK posts."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        elif self.headers.get("Content-Encoding") == "br":
            body = b""  # not asked for: the SDK compresses with gzip unless told otherwise
        SentryIngest.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"id": "0" * 32}).encode())

    def log_message(self, *args) -> None:
        pass


SENTRY_SCRIPT = """
import sys, sentry_sdk
from microblog import create_app
app = create_app({"TESTING": True, "SENTRY_DSN": sys.argv[1], "REDIS_URL": sys.argv[2],
                  "SQLALCHEMY_DATABASE_URI": "sqlite://", "PROPAGATE_EXCEPTIONS": False})
app.add_url_rule("/boom", "boom", lambda: 1 / 0)
names = sorted(type(i).__name__ for i in sentry_sdk.get_client().integrations.values())
print("integrations:", names)
print("status:", app.test_client().get("/boom").status_code)
sentry_sdk.flush(10)
"""


def test_sentry_gets_an_unhandled_error_when_configured(redis_server):
    # Given a Sentry ingest endpoint on loopback (nothing leaves this machine)
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryIngest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://public@127.0.0.1:{server.server_port}/1"
    SentryIngest.received.clear()
    try:
        # When an app with SENTRY_DSN set fails a request (in a process of its own: the SDK is
        # global to a process)
        result = subprocess.run(
            [sys.executable, "-c", SENTRY_SCRIPT, dsn, redis_server.url],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    # Then the SDK runs the Flask and Dramatiq integrations and sent the error
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'FlaskIntegration'" in result.stdout and "'DramatiqIntegration'" in result.stdout
    assert "status: 500" in result.stdout
    assert any(b"ZeroDivisionError" in body for body in SentryIngest.received), result.stderr
