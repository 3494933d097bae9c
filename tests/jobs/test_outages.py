"""Jobs through outages: the database or the mail relay away mid-export, then back.

A real `dramatiq tasks` process exports while the dependency is stopped for real (PostgreSQL
shut down "fast", the relay's port closed). The export must end succeeded with one email, the
card must have said what it waited for meanwhile, and the worker's log must hold no traceback.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask

from devkit.services import MailCatcher, free_port, wait_until
from microblog import create_app
from microblog.auth.models import User
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.models import utcnow
from tests.support import ROOT
from tests.support.data import insert_posts
from tests.support.databases import migrate
from tests.support.web import password_hash

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

POSTS = 60_000  # several seconds of reading: the outage lands mid-export


class Site:
    """An app and a `dramatiq tasks` process on a database and relay the test controls."""

    def __init__(self, database_url: str, redis_url: str, mail_port: int, log: Path) -> None:
        self.config = {"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url,
                       "MAIL_PORT": mail_port}  # fmt: skip
        self.app: Flask = create_app(self.config)
        self.log = log
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "MAIL_SERVER": "127.0.0.1",
               "MAIL_PORT": str(mail_port), "SECRET_KEY": "outage", "PYTHONUNBUFFERED": "1",
               "dramatiq_prom_port": "0", "dramatiq_prom_db": str(log.parent / "prom")}  # fmt: skip
        self._log_file = log.open("w")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1", "--threads", "2"],
            cwd=ROOT, env={**os.environ, **env}, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def export(self, posts: int) -> str:
        with self.app.app_context():
            user = User(username=f"outage{time.monotonic_ns()}", email="outage@example.com",
                        email_confirmed_at=utcnow())  # fmt: skip
            user.password_hash = password_hash()
            db.session.add(user)
            db.session.commit()
            insert_posts(user.id, [f"post {i}" for i in range(posts)])
            return launch(export_posts, user.id).id

    def progress(self, task_id: str) -> int:
        with self.app.app_context():
            done = db.session.get(Task, task_id).done
            db.session.remove()
            return done

    def close(self) -> None:
        if self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            self.worker.wait(timeout=30)
        self._log_file.close()
        with self.app.app_context():
            db.engine.dispose()


@pytest.fixture
def site_on(tmp_path, redis_server, smtp_server):
    sites: list[Site] = []

    def make(database_url: str, mail_port: int | None = None) -> Site:
        sites.append(Site(database_url, redis_server.url, mail_port or smtp_server.port,
                          tmp_path / f"worker-{len(sites)}.log"))  # fmt: skip
        return sites[-1]

    yield make
    for site in sites:
        site.close()


def assert_no_traceback(site: Site) -> None:
    log = site.log.read_text()
    assert "Traceback" not in log and "unhandled exception" not in log, log[-4000:]


def waiting_for(recorded_events, task_id: str, reason: str, timeout: float):
    """Wait for the card to hear that the task waits for ``reason``; return that event."""
    return recorded_events.wait_for(
        lambda m: m.data.get("task_id") == task_id and m.data.get("retry_at") is not None
        and m.data.get("error") == reason,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize("outage_seconds", [20, 90])
def test_an_export_waits_out_a_database_outage_and_succeeds_once(
    own_postgres, site_on, recorded_events, mailbox, outage_seconds
):
    # Given an export under way on a database of its own
    own_postgres.execute("CREATE DATABASE outage")
    url = own_postgres.url("outage")
    migrate(url)
    site = site_on(url)
    task_id = site.export(POSTS)
    wait_until(lambda: site.progress(task_id) > 0, 60, "the export to be under way")
    # When PostgreSQL shuts down ("fast") for a while, then comes back
    own_postgres.halt()
    waiting = waiting_for(recorded_events, task_id, "The database is unavailable.", 30)
    time.sleep(outage_seconds)  # the outage itself, not a wait for something to happen
    own_postgres.start()
    # Then the card said what it waited for, and the export ends succeeded with one email
    assert waiting.data["status"] == "running" and waiting.data["max_attempts"] == 13
    finished = recorded_events.finished(task_id, timeout=240)
    assert finished.data["status"] == "succeeded", finished.data
    assert finished.data["done"] == POSTS
    assert len(mailbox) == 1
    assert_no_traceback(site)


def test_an_export_waits_out_a_minute_without_its_mail_relay(
    database_url, site_on, recorded_events
):
    # Given a relay that is down when the export's email is due
    relay_port = free_port()
    site = site_on(database_url, relay_port)
    task_id = site.export(10)
    waiting = waiting_for(recorded_events, task_id, "The mail server is unreachable.", 60)
    # When it comes back a minute later
    time.sleep(60)  # the outage itself, not a wait for something to happen
    relay = MailCatcher(port=relay_port).start()
    try:
        # Then the export ends succeeded with its one email
        finished = recorded_events.finished(task_id, timeout=240)
        assert finished.data["status"] == "succeeded", finished.data
        assert len(relay.messages) == 1
    finally:
        relay.stop()
    assert waiting.data["status"] == "running"
    assert_no_traceback(site)
