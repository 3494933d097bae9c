"""Fixtures: real services on loopback ports, a fresh app per test, and small helpers."""

import collections
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devkit.redis_topologies import RedisClusterServers
from devkit.services import RedisDatabase
from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.models import utcnow
from tests.support import diagnostics
from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.data import Tarpit, insert_posts
from tests.support.databases import KINDS, Databases, PostgresServer
from tests.support.servers import ONE_REDIS, LiveStacks, make_config
from tests.support.sites import Site
from tests.support.web import PASSWORD, AuthActions, password_hash

# The real Redis and SMTP servers, the in-process worker, recorded events and golden files
# come from the package's test plugin, as they would for any project with job types.
pytest_plugins = ("devkit.pytest_plugin",)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two processes per core, at most eight: much of the suite waits (on servers, outages,
    browsers), and a second process per core runs meanwhile."""
    return min(2 * (os.cpu_count() or 1), 8)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Add to a failed test's report what its processes were doing (see diagnostics)."""
    report = yield
    if report.failed and call.when == "call":
        for title, text in diagnostics.sections(getattr(item, "funcargs", {})):
            report.sections.append((f"Diagnostics: {title}", text))
    return report


# Seconds each test file took in earlier runs, kept in pytest's cache by the main process,
# and in this run so far.
FILE_SECONDS = "microblog/file_seconds"
_file_seconds: collections.Counter = collections.Counter()


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the longest files first (each process takes a file at a time, so a long one
    picked up last would be the whole run's tail): by the seconds they took before, else
    the modules marked ``long`` first; otherwise in the shuffled order. xdist keeps this
    order only with ``--no-loadscope-reorder`` (pyproject.toml): by default it sorts the
    files by their number of tests."""
    seconds = config.cache.get(FILE_SECONDS, {}) if config.cache else {}

    def longest_first(item: pytest.Item) -> float:
        known = seconds.get(item.nodeid.split("::")[0])
        if known is None:
            known = 10_000 if item.get_closest_marker("long") else 0
        return -known

    items.sort(key=longest_first)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "collect":
        _file_seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remember how long each file took (in the main process, which hears every test)."""
    config = session.config
    if config.cache is None or hasattr(config, "workerinput") or not _file_seconds:
        return
    if config.option.keyword or config.option.markexpr or any("::" in a for a in config.args):
        return  # a part of some file ran: its time says nothing of the whole
    seconds = config.cache.get(FILE_SECONDS, {})
    seconds.update({name: round(total, 1) for name, total in _file_seconds.items()})
    config.cache.set(FILE_SECONDS, seconds)


# Seconds a test's app waits at its end for its events published later (Redis came back).
PUBLISH_LATER_GRACE = 10


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's own PostgreSQL cluster; the suite fails, never skips, without one."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test's own, which it may shut down and start again."""
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


@pytest.fixture
def app_config(database_url, redis_server, smtp_server) -> dict:
    """The configuration of this test's app; a test may change it before using ``app``."""
    return make_config(database_url, redis_server, smtp_server)


@pytest.fixture
def app(app_config) -> Iterator[Flask]:
    before = set(threading.enumerate())
    app = create_app(app_config)
    yield app
    hub = app.extensions.get("microblog.broadcaster")
    if hub is not None:  # a stream was served in this process: its thread would outlive us
        hub.stop()
    # An event published later (Redis was away when a task ended) retries in a thread of its
    # own; one left retrying would publish into, and make garbage during, the next tests.
    retrying = [t for t in set(threading.enumerate()) - before if t.name == "publish-later"]
    deadline = time.monotonic() + PUBLISH_LATER_GRACE
    for thread in retrying:
        thread.join(timeout=max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in retrying), (
        "an event was still waiting for a Redis that never came back: end the outage in the "
        "test, or shorten the wait with microblog.jobs.events.FINAL_EVENT_RETRY_SECONDS"
    )
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def make_app(app, app_config):
    """Build apps with changed settings, on ``app``'s database and freshly emptied Redis.

    Their database connections are closed afterwards.
    """
    made = []

    def make(**changes) -> Flask:
        made.append(create_app({**app_config, **changes}))
        return made[-1]

    yield make
    for app in made:
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

    def make(
        username: str, password: str = PASSWORD, email: str | None = None, confirmed: bool = True
    ) -> int:
        """``confirmed``: whether the address is confirmed (the site emails it everything)."""
        with app.app_context():
            user = User(username=username, email=email or f"{username}@example.com",
                        email_confirmed_at=utcnow() if confirmed else None)  # fmt: skip
            user.password_hash = password_hash(password)
            db.session.add(user)
            db.session.commit()
            return user.id

    return make


@pytest.fixture
def auth(client: FlaskClient, make_user) -> AuthActions:
    return AuthActions(client, make_user)


@pytest.fixture(scope="module")
def browser():
    """One chromium per module, for the tests that drive a real browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()


@pytest.fixture
def site_on(tmp_path, redis_server, smtp_server) -> Iterator[Callable[..., Site]]:
    """``site_on(database_url, mail_port=None, redis_url=None)``: a site (an app and a
    `dramatiq tasks` process) on that database, and on the test's Redis and relay unless
    told otherwise; closed after the test."""
    sites: list[Site] = []

    def make(database_url: str, mail_port: int | None = None, redis_url: str | None = None):
        log = tmp_path / f"worker-{len(sites)}.log"
        sites.append(Site(database_url, redis_url or redis_server.url,
                          mail_port or smtp_server.port, log))  # fmt: skip
        return sites[-1]

    yield make
    for site in sites:
        site.close()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    """A server that accepts connections and never says a word (a relay, a sentinel)."""
    pit = Tarpit()
    yield pit
    pit.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of three masters and three replicas, started on first use."""
    cluster = RedisClusterServers().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def live_stacks(databases, smtp_server, tmp_path_factory) -> Iterator[LiveStacks]:
    stacks = LiveStacks(databases, tmp_path_factory.mktemp("live"), smtp_server)
    yield stacks
    stacks.close()


@pytest.fixture(scope="module")
def module_redis(redis_instance, live_stacks) -> Iterator[RedisDatabase]:
    """The Redis database of the module's gunicorn servers, stopped when the module ends."""
    database = redis_instance.fresh_database()
    yield database
    live_stacks.close_site(database.url)


def shares_module_servers(request: pytest.FixtureRequest) -> bool:
    """Say whether a test talks to its module's gunicorn: it asks for one and starts no
    worker (``live_env``). A test that starts workers gets a gunicorn of its own instead, on
    its own Redis: a worker takes any message of its queue, an earlier test's too."""
    return "gunicorn_server" in request.fixturenames and "live_env" not in request.fixturenames


@pytest.fixture
def redis_server(request, redis_instance) -> RedisDatabase:
    """This test's Redis database (see the plugin's): its own, or, for a test that talks to the
    module's gunicorn (whose Redis is fixed when it starts), the module's."""
    if shares_module_servers(request):
        return request.getfixturevalue("module_redis")
    return redis_instance.fresh_database()


@pytest.fixture
def live_database(request, live_stacks, database, redis_server) -> str:
    """The migrated database of the test's site, which is its Redis database's alone: the
    module's (see ``shares_module_servers``), or the test's own, dropped after it together
    with the servers on it."""
    url = live_stacks.database(database, redis_server.url)
    if not shares_module_servers(request):
        request.addfinalizer(lambda: live_stacks.close_site(redis_server.url))
    return url


@pytest.fixture
def live_env(live_stacks, database, redis_server, live_database) -> dict[str, str]:
    """The environment of the server and worker processes the tests start."""
    return live_stacks.env(database, redis_server.url)


@pytest.fixture
def events_topology(request) -> dict[str, str]:
    """Where the server processes' live events go, as their environment says it: the test's
    Redis, or the Redis Cluster for a test marked ``on_every_events_topology``."""
    if getattr(request, "param", ONE_REDIS) == ONE_REDIS:
        return {}
    cluster = request.getfixturevalue("redis_cluster")
    return {"EVENTS_REDIS_URL": cluster.url, "EVENTS_REDIS_CLUSTER": "1"}


@pytest.fixture
def gunicorn_server(live_stacks, database, redis_server, live_database, events_topology) -> str:
    """gunicorn on the test's site (the module's, or the test's own, see
    ``shares_module_servers``); its base URL."""
    return live_stacks.gunicorn(database, redis_server.url, events_topology)


@pytest.fixture
def live_app(
    live_stacks, database, redis_server, live_database, events_topology
) -> Iterator[Flask]:
    """An app on the test's site, for arranging data the server processes will see."""
    app = live_stacks.app(database, redis_server.url, events_topology)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def live_user(live_app):
    """Create a user on the live database; return (id, username)."""
    counter = iter(range(1, 1_000_000))

    def make(prefix: str = "user", posts: int = 0) -> tuple[int, str]:
        username = f"{prefix}-{os.getpid()}-{next(counter)}-{os.urandom(3).hex()}"
        with live_app.app_context():
            user = User(username=username, email=f"{username}@example.com",
                        email_confirmed_at=utcnow())  # fmt: skip
            user.password_hash = password_hash()
            db.session.add(user)
            db.session.commit()
            if posts:
                insert_posts(user.id, [f"post {i} of {username}" for i in range(posts)])
            return user.id, username

    return make


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    """The app's context for the whole test: its database session, ``url_for``, ``current_app``."""
    with app.app_context():
        yield
