"""A dependency away is no crash: a request that meets the database stopped (a real PostgreSQL
shut down and restarted, through gunicorn under load too) or locked past its timeout (SQLite)
answers 503 with ``Retry-After`` on a page that needs no database, each process logs one
WARNING per outage, nobody is mailed, and requests work again at once when it is back."""

import logging
import os
import sqlite3
import threading
from collections import Counter

import pytest
import requests
from flask import request_finished

from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from tests.support.databases import migrate
from tests.support.servers import Gunicorn, make_config
from tests.support.web import JSON, PASSWORD, live_session, password_hash

UNAVAILABLE = "The site cannot answer right now"


@pytest.fixture
def site(own_postgres, redis_server, smtp_server):
    """An app on a PostgreSQL cluster of the test's own, with alice in it."""
    own_postgres.execute("CREATE DATABASE site")
    url = own_postgres.url("site")
    migrate(url)
    app = create_app({**make_config(url, redis_server, smtp_server), "ADMINS": ["ops@example.com"]})
    client = app.test_client()
    with app.app_context():
        from microblog.auth.models import User

        user = User(username="alice", email="alice@example.com")
        user.password_hash = password_hash()
        db.session.add(user)
        db.session.commit()
    assert (
        client.post("/auth/login", data={"username": "alice", "password": PASSWORD}).status_code
        == 302
    )
    yield app, client
    with app.app_context():
        db.engine.dispose()


def add_alice(app) -> None:
    with app.app_context():
        user = User(username="alice", email="alice@example.com")
        user.password_hash = password_hash()
        db.session.add(user)
        db.session.commit()


def assert_unavailable(response, json: bool = False) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:500]
    assert response.headers["Retry-After"] == "5"
    if json:
        assert response.get_json()["error"] == "Service Unavailable"
    else:
        page = response.get_data(as_text=True)
        assert UNAVAILABLE in page and "Traceback" not in page and "microblog.css" in page


def test_a_stopped_database_answers_503_and_logs_one_warning(site, own_postgres, caplog):
    app, client = site
    # When PostgreSQL stops
    own_postgres.halt()
    with caplog.at_level(logging.INFO, logger="microblog"):
        # Then every page, signed in or not, and every script gets a 503 to try again
        for path in ("/", "/explore", "/search?q=hello", "/user/alice", "/auth/account"):
            assert_unavailable(client.get(path))
        assert_unavailable(client.get("/explore", headers=JSON), json=True)
        assert_unavailable(client.post("/", data={"post": "lost?"}))
        assert app.test_client().get("/auth/login").status_code == 200  # needs no database
        # When it is back, the next request works at once
        own_postgres.start()
        assert client.get("/explore").status_code == 200
    # And the outage was one WARNING, its end one INFO line, and nothing an ERROR (no mail)
    levels = Counter(r.levelname for r in caplog.records if r.name.startswith("microblog"))
    assert levels["WARNING"] == 1 and levels["ERROR"] == 0, caplog.text
    assert "the database is unreachable" in caplog.text and "the database is back" in caplog.text


def test_a_connection_lost_after_the_page_was_made_still_answers_the_page(
    site, own_postgres, caplog
):
    app, client = site

    # Given the database ends the request's connection after the view ran, before teardown
    # (its restart between a page's last query and the end of the request)
    def end_the_connection(sender, response):
        own_postgres.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = 'site' AND pid <> pg_backend_pid()")  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="microblog"):
        # Then the page made is answered, not a 500 raised from ending the session
        with request_finished.connected_to(end_the_connection, app):
            response = client.get("/explore")
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert "alice" in response.get_data(as_text=True)
        # And the lost connection fails nobody after it
        assert client.get("/user/alice").status_code == 200
    assert "ERROR" not in caplog.text


def test_a_database_locked_past_its_timeout_answers_503_and_stores_nothing(
    databases, tmp_path, redis_server, smtp_server, caplog
):
    # Given an app on SQLite that waits a tenth of a second for a lock, and alice signed in
    url = databases.migrated("sqlite", tmp_path)
    config = make_config(url, redis_server, smtp_server)
    app = create_app({**config, "DATABASE_STATEMENT_TIMEOUT_MS": 600})
    try:
        add_alice(app)
        client = app.test_client()
        assert (
            client.post("/auth/login", data={"username": "alice", "password": PASSWORD}).status_code
            == 302
        )
        # When another process holds the write lock
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=1)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with caplog.at_level(logging.WARNING, logger="microblog"):
                # Then a post is refused with a 503, not a 500
                assert_unavailable(client.post("/", data={"post": "while locked"}))
        finally:
            holder.rollback()
            holder.close()
        # And once the lock is gone the same post goes through, once
        assert client.post("/", data={"post": "after the lock"}).status_code == 302
        page = client.get("/explore").get_data(as_text=True)
        assert "after the lock" in page and "while locked" not in page
        assert "database is locked" in caplog.text and "ERROR" not in caplog.text
    finally:
        with app.app_context():
            db.engine.dispose()


def test_postgresql_restarted_twice_under_load_costs_no_500(
    own_postgres, redis_server, smtp_server, tmp_path
):
    # Given gunicorn on a PostgreSQL of the test's own, with ADMINS set
    own_postgres.execute("CREATE DATABASE site")
    url = own_postgres.url("site")
    migrate(url)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_server.url,
           "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_server.port), "SECRET_KEY": "load",
           "ADMINS": "ops@example.com", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    app = create_app(make_config(url, redis_server, smtp_server))
    add_alice(app)
    with app.app_context():
        db.engine.dispose()
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    browsers = [live_session(server.url, "alice") for _ in range(4)]
    smtp_server.messages.clear()
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load(session: requests.Session) -> None:
        with session:
            while not stop.is_set():
                for path in ("/explore", "/user/alice", "/user/nobody"):
                    try:
                        response = session.get(server.url + path, timeout=10)
                    except requests.RequestException as error:
                        answers.append((0, str(error)))
                        continue
                    answers.append((response.status_code, response.headers.get("Retry-After")))

    threads = [threading.Thread(target=load, args=(browser,)) for browser in browsers]
    try:
        for thread in threads:
            thread.start()
        # When PostgreSQL is restarted twice while requests keep coming
        for _ in range(2):
            own_postgres.halt()
            own_postgres.start()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    # Then no request failed with a 500 (or at all): each was answered, or told to retry
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 404, 503}, statuses
    assert all(retry == "5" for status, retry in answers if status == 503)
    assert statuses[503] > 0, f"no request met the outage: {statuses}"
    # And the log holds at most one WARNING per outage, no error, and nobody was mailed
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert log.count("is unreachable; answering 503") <= 2, log[-3000:]
    assert [m for m in smtp_server.messages if m["To"] == "ops@example.com"] == []
