"""Fixtures: real services on loopback ports, a fresh app per test, and small helpers."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from devkit.services import MailCatcher, RedisServer, free_port, wait_until
from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from tests.databases import KINDS, Databases, PostgresServer
from tests.helpers import insert_posts

# The real Redis and SMTP servers, the in-process worker, recorded events and golden files
# come from the package's test plugin, as they would for any project with job types.
pytest_plugins = ("devkit.pytest_plugin",)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-9"
LIVE_METRICS_TOKEN = "live-metrics"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's own PostgreSQL cluster; the suite fails, never skips, without one."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def databases(request, tmp_path_factory) -> Databases:
    return Databases(
        tmp_path_factory.mktemp("databases"), lambda: request.getfixturevalue("postgres_server")
    )


@pytest.fixture(params=KINDS)
def database(request) -> str:
    """The kind of database this test runs on; every test that uses one runs on both."""
    return request.param


@pytest.fixture
def database_url(database, databases, tmp_path) -> Iterator[str]:
    """A database of this test's own, built by the migrations."""
    url = databases.migrated(database, tmp_path)
    yield url
    databases.drop(url)


def make_config(database_url: str, redis_server: RedisServer, smtp_server: MailCatcher) -> dict:
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


@pytest.fixture
def app_config(database_url, redis_server, smtp_server) -> dict:
    """The configuration of this test's app; a test may change it before using ``app``."""
    return make_config(database_url, redis_server, smtp_server)


@pytest.fixture
def app(app_config, redis_server) -> Iterator[Flask]:
    redis.Redis.from_url(redis_server.url).flushall()  # no messages left by other tests
    app = create_app(app_config)
    yield app
    hub = app.extensions.get("microblog.broadcaster")
    if hub is not None:  # a stream was served in this process: its thread would outlive us
        hub.stop()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask):
    """Create a user in the database and return its id."""

    def make(username: str, password: str = PASSWORD, email: str | None = None) -> int:
        with app.app_context():
            user = User(username=username, email=email or f"{username}@example.com")
            user.set_password(password)
            db.session.add(user)
            db.session.commit()
            return user.id

    return make


class AuthActions:
    def __init__(self, client: FlaskClient, make_user) -> None:
        self._client = client
        self._make_user = make_user

    def login(self, username: str = "alice", password: str = PASSWORD, **extra):
        return self._client.post(
            "/auth/login", data={"username": username, "password": password, **extra}
        )

    def signed_in(self, username: str = "alice") -> int:
        """Create ``username`` and sign this client in as that user; return the user's id."""
        user_id = self._make_user(username)
        response = self.login(username)
        assert response.status_code == 302, response.data
        return user_id

    def logout(self):
        return self._client.post("/auth/logout")


@pytest.fixture
def auth(client: FlaskClient, make_user) -> AuthActions:
    return AuthActions(client, make_user)


class LiveStacks:
    """Per kind of database: a migrated database and a gunicorn serving it, made on first use.

    They live for the whole session, so tests may run in any order without restarting them.
    """

    def __init__(self, databases, directory: Path, redis_server, smtp_server) -> None:
        self._databases = databases
        self._directory = directory
        self._redis, self._smtp = redis_server, smtp_server
        self._urls: dict[str, str] = {}
        self._apps: dict[str, Flask] = {}
        self._servers: dict[str, Gunicorn] = {}

    def database(self, kind: str) -> str:
        if kind not in self._urls:
            url = self._databases.migrated(kind, self._directory)
            if kind == "postgresql":
                # Both kinds share one Redis, where channels are named by user id: keep ids apart.
                self._databases.postgres.execute_in(
                    url, "ALTER SEQUENCE user_id_seq RESTART WITH 1000001"
                )
            self._urls[kind] = url
        return self._urls[kind]

    def env(self, kind: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database(kind),
            "REDIS_URL": self._redis.url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self._smtp.port),
            "SECRET_KEY": "live-test",
            "PYTHONUNBUFFERED": "1",
            "METRICS_TOKEN": LIVE_METRICS_TOKEN,
            # Every live test signs in from 127.0.0.1; the per-account limit still holds.
            "LOGIN_LIMIT_PER_ADDRESS": "10000 per minute",
            # Workers serve metrics on a port of their own: any free one, in this session's
            # directory, so that parallel workers never fight over one.
            "dramatiq_prom_port": "0",
            "dramatiq_prom_db": str(self._directory / "worker-metrics"),
        }

    def app(self, kind: str) -> Flask:
        if kind not in self._apps:
            self._apps[kind] = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": self.database(kind),
                    "REDIS_URL": self._redis.url,
                    "MAIL_PORT": self._smtp.port,
                }
            )
        return self._apps[kind]

    def gunicorn(self, kind: str) -> str:
        """Return the URL of gunicorn on this kind's database, with 1 s heartbeats."""
        if kind not in self._servers:
            env = {**self.env(kind), "SSE_HEARTBEAT_SECONDS": "1"}
            self._servers[kind] = Gunicorn(env, self._directory / f"gunicorn-{kind}.log")
        return self._servers[kind].url

    def gunicorn_log(self, kind: str) -> str:
        """Return what this kind's gunicorn has logged so far (access lines included)."""
        return (self._directory / f"gunicorn-{kind}.log").read_text()

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        for app in self._apps.values():
            with app.app_context():
                db.engine.dispose()


@pytest.fixture(scope="session")
def live_stacks(databases, redis_server, smtp_server, tmp_path_factory) -> Iterator[LiveStacks]:
    stacks = LiveStacks(databases, tmp_path_factory.mktemp("live"), redis_server, smtp_server)
    yield stacks
    stacks.close()


@pytest.fixture
def live_database(live_stacks, database) -> str:
    """A migrated database shared by the session's server processes of this kind."""
    return live_stacks.database(database)


@pytest.fixture
def live_env(live_stacks, database) -> dict[str, str]:
    """The environment of the server and worker processes the tests start."""
    return live_stacks.env(database)


class Gunicorn:
    """The real gunicorn, configured by gunicorn.conf.py, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
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
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.log.close()


@pytest.fixture
def gunicorn_server(live_stacks, database) -> str:
    """gunicorn on the session's services and this kind's live database; its base URL."""
    return live_stacks.gunicorn(database)


@pytest.fixture
def live_app(live_stacks, database) -> Flask:
    """An app on the live database, for arranging data the server processes will see."""
    return live_stacks.app(database)


@pytest.fixture
def live_user(live_app):
    """Create a user on the live database; return (id, username)."""
    counter = iter(range(1, 1_000_000))

    def make(prefix: str = "user", posts: int = 0) -> tuple[int, str]:
        username = f"{prefix}-{os.getpid()}-{next(counter)}-{os.urandom(3).hex()}"
        with live_app.app_context():
            user = User(username=username, email=f"{username}@example.com")
            user.set_password(PASSWORD)
            db.session.add(user)
            db.session.commit()
            if posts:
                insert_posts(user.id, [f"post {i} of {username}" for i in range(posts)])
            return user.id, username

    return make


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


def live_session(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """Return a requests session signed in as ``username`` through the real login form."""
    session = requests.Session()
    page = session.get(base_url + "/auth/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(
        base_url + "/auth/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return session
