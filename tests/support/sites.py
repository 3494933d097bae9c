"""Sites of a test's own for outages: an app and a `dramatiq tasks` process on a database,
Redis and relay the test controls (and may stop), and what to check of them afterwards."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flask import Flask

from microblog import create_app
from microblog.auth.models import User
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.models import utcnow
from tests.support import ROOT
from tests.support.data import insert_posts
from tests.support.web import password_hash


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
