"""The live servers the tests run: gunicorn and Dramatiq workers as processes, on a migrated
database per site, and the app configuration every test's app starts from."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from dramatiq.brokers.redis import RedisBroker
from flask import Flask

from devkit.services import MailCatcher, RedisDatabase, free_port, wait_until
from microblog import create_app
from microblog.config import from_environment
from tests.support import ROOT

LIVE_METRICS_TOKEN = "live-metrics"

# Where the live servers' events go (the ``events_topology`` fixture): the session's Redis, or
# a Redis Cluster, where they travel by sharded pub/sub. A module whose contract must hold on
# both marks its tests ``on_every_events_topology``.
ONE_REDIS, REDIS_CLUSTER = "one redis", "redis cluster"
on_every_events_topology = pytest.mark.parametrize(
    "events_topology", [ONE_REDIS, REDIS_CLUSTER], indirect=True
)


def make_config(database_url: str, redis_server: RedisDatabase, smtp_server: MailCatcher) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WTF_CSRF_ENABLED": False,
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "MAIL_SUPPRESS_SEND": False,  # TESTING would otherwise swallow mail
        "POSTS_PER_PAGE": 5,
    }


class LiveStacks:
    """Live sites: for each kind of database and Redis database, a migrated database made on
    first use, and gunicorn servers on the pair (one per events topology), until
    :meth:`close_site` is called for that Redis.

    A site's SQL database is its Redis database's alone, as in production: a worker's reaper
    mends every unfinished task of its database, so a worker on another test's database would
    end that test's tasks as lost and publish their events on its own Redis.
    """

    def __init__(self, databases, directory: Path, smtp_server) -> None:
        self._databases = databases
        self._directory = directory
        self._smtp = smtp_server
        self._urls: dict[tuple[str, str], str] = {}
        self._servers: dict[tuple, Gunicorn] = {}

    def database(self, kind: str, redis_url: str) -> str:
        key = (kind, redis_url)
        if key not in self._urls:
            url = self._databases.migrated(kind, self._directory)
            if kind == "postgresql":
                # Both kinds' sites of a module share its Redis, where channels are named by
                # user id: keep ids apart.
                self._databases.postgres.execute_in(
                    url, "ALTER SEQUENCE user_id_seq RESTART WITH 1000001"
                )
            self._urls[key] = url
        return self._urls[key]

    def env(self, kind: str, redis_url: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database(kind, redis_url),
            "REDIS_URL": redis_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self._smtp.port),
            "SECRET_KEY": "live-test",
            "PYTHONUNBUFFERED": "1",
            "METRICS_TOKEN": LIVE_METRICS_TOKEN,
            # Every live test signs in from 127.0.0.1; the per-account limit still holds.
            "LOGIN_LIMIT_PER_ADDRESS": "10000 per minute",
            # Hostile-input tests start exports by the hundred; the limit has its own test.
            "EXPORT_LIMIT_PER_USER": "10000 per minute",
            # Workers serve metrics on a port of their own: any free one, in this session's
            # directory, so that parallel workers never fight over one.
            "dramatiq_prom_port": "0",
            "dramatiq_prom_db": str(self._directory / "worker-metrics"),
        }

    def app(self, kind: str, redis_url: str, redis_env: dict[str, str] | None = None) -> Flask:
        """Return a new app on the site of this kind and ``redis_url`` (``redis_env``: where
        its events are instead, as environment variables, e.g. a Redis Cluster's)."""
        return create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.database(kind, redis_url),
                "REDIS_URL": redis_url,
                "MAIL_PORT": self._smtp.port,
                **from_environment(redis_env or {}),
            }
        )

    def gunicorn(self, kind: str, redis_url: str, redis_env: dict[str, str] | None = None) -> str:
        """Return the URL of gunicorn on the site of this kind and ``redis_url``, with 1 s
        heartbeats (and its events where ``redis_env`` says, as for :meth:`app`)."""
        key = (kind, redis_url, tuple(sorted((redis_env or {}).items())))
        if key not in self._servers:
            env = {**self.env(kind, redis_url), "SSE_HEARTBEAT_SECONDS": "1", **(redis_env or {})}
            log = self._directory / f"gunicorn-{kind}-{len(self._servers)}.log"
            self._servers[key] = Gunicorn(env, log)
        return self._servers[key].url

    def gunicorn_log(self, base_url: str) -> str:
        """Return what the gunicorn at ``base_url`` has logged so far (access lines included)."""
        server = next(s for s in self._servers.values() if s.url == base_url)
        return server.log_path.read_text()

    def close_site(self, redis_url: str) -> None:
        """Stop the servers on ``redis_url`` and drop its sites' databases."""
        for key in [key for key in self._servers if key[1] == redis_url]:
            self._servers.pop(key).stop()
        for key in [key for key in self._urls if key[1] == redis_url]:
            self._databases.drop(self._urls.pop(key))

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


class Gunicorn:
    """The real gunicorn, configured by gunicorn.conf.py, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = log_path.open("w+")
        env = {**env, "MICROBLOG_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
               "PUBLIC_URL": self.url}  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(self._answering, 30, "gunicorn to answer")
        except BaseException:
            self.stop()  # never leave a server behind a failed start
            raise

    def _answering(self) -> bool:
        if self.process.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"gunicorn exited early:\n{self.log.read()}")
        try:
            return requests.get(self.url + "/auth/login", timeout=2).ok
        except requests.RequestException:  # not listening yet, or still booting
            return False

    def stop(self) -> None:
        """Stop the server: gracefully, or, if a test left requests that hold it up (stalled
        downloads, open streams), at once after a few seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)  # gunicorn's own graceful timeout, and some
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@contextmanager
def running_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run ``dramatiq tasks`` (one process, two threads) until the block ends."""
    with log_path.open("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1", "--threads", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def wait_until_idle(broker: RedisBroker, timeout: float = 30) -> None:
    """Wait until no message of the default queue is waiting, delayed or running."""

    def idle() -> bool:
        return broker.do_qsize("default") == 0 and broker.do_qsize("default.DQ") == 0

    wait_until(idle, timeout, "the worker to finish every message")


def signal_group(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
