"""Fixtures: real services on loopback ports, a fresh app per test, and small helpers."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from dramatiq import Worker
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade

from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.services import MailCatcher, RedisServer, free_port, wait_until
from tests.helpers import EventRecorder, insert_posts

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-9"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[MailCatcher]:
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def mailbox(smtp_server: MailCatcher) -> list:
    """The messages the SMTP server receives during this test."""
    smtp_server.messages.clear()
    return smtp_server.messages


def make_config(tmp_path: Path, redis_server: RedisServer, smtp_server: MailCatcher) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.sqlite'}",
        "WTF_CSRF_ENABLED": False,
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "MAIL_SUPPRESS_SEND": False,  # TESTING would otherwise swallow mail
        "POSTS_PER_PAGE": 5,
    }


@pytest.fixture
def app_config(tmp_path, redis_server, smtp_server) -> dict:
    """The configuration of this test's app; a test may change it before using ``app``."""
    return make_config(tmp_path, redis_server, smtp_server)


@pytest.fixture
def app(app_config, redis_server) -> Iterator[Flask]:
    redis.Redis.from_url(redis_server.url).flushall()  # no messages left by other tests
    app = create_app(app_config)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def worker(app: Flask) -> Iterator[Worker]:
    """A real Dramatiq worker, in this process, consuming the app's Redis broker."""
    worker = Worker(app.extensions["dramatiq"], worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def recorded_events(redis_server) -> Iterator[EventRecorder]:
    """Every event published on any user's channel while the test runs."""
    recorder = EventRecorder(redis_server.url)
    yield recorder
    recorder.close()


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


@pytest.fixture(scope="session")
def live_database(tmp_path_factory) -> str:
    """A SQLite database built by the migrations, shared by the session's server processes."""
    url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'live.sqlite'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def live_env(live_database, redis_server, smtp_server) -> dict[str, str]:
    """The environment of the server and worker processes the tests start."""
    return {
        **os.environ,
        "DATABASE_URL": live_database,
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
        "SECRET_KEY": "live-test",
        "PYTHONUNBUFFERED": "1",
    }


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


@pytest.fixture(scope="session")
def gunicorn_server(live_env, tmp_path_factory) -> Iterator[str]:
    """gunicorn on the session's services, with 1 s heartbeats; yields its base URL."""
    env = {**live_env, "SSE_HEARTBEAT_SECONDS": "1"}
    server = Gunicorn(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def live_app(live_database, redis_server, smtp_server) -> Flask:
    """An app on the live database, for arranging data the server processes will see."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": live_database,
            "REDIS_URL": redis_server.url,
            "MAIL_PORT": smtp_server.port,
        }
    )


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


def live_session(base_url: str, username: str) -> requests.Session:
    """Return a requests session signed in as ``username`` through the real login form."""
    session = requests.Session()
    page = session.get(base_url + "/auth/login", timeout=5).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(
        base_url + "/auth/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302, response.text
    return session
