"""Database engine settings that depend on the backend."""

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db

SQLITE_BUSY_MS = 10_000  # a lock wait when statements have no timeout


def _tune_sqlite(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    # WAL lets the web read while a worker writes; the busy timeout waits out short writes
    # instead of failing with "database is locked" (a sixth of the statement timeout, as
    # PostgreSQL's lock waits); SQLite ignores foreign keys by default.
    def tune(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return tune


def init_app(app: Flask) -> None:
    """Tune the engine Flask-SQLAlchemy created for this app, and end each context's session
    without trusting its connection."""
    app.teardown_appcontext(close_session)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            os.makedirs(app.instance_path, exist_ok=True)
            busy_ms = app.config["DATABASE_STATEMENT_TIMEOUT_MS"] // 6 or SQLITE_BUSY_MS
            event.listen(db.engine, "connect", _tune_sqlite(busy_ms))


def discard_session() -> None:
    """End the session's transaction without trusting its connection.

    After an outage the connection may be dead: its rollback raises, and handed back to the
    pool it would fail the next user too. Then it is invalidated instead (closed for good;
    the pool opens a new one, checked first by ``pool_pre_ping``).
    """
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session().invalidate()


def close_session(_error: BaseException | None = None) -> None:
    """Close the context's session, as Flask-SQLAlchemy would, without trusting its connection.

    Registered after Flask-SQLAlchemy's teardown, so run before it (teardowns run
    last-registered first): closing rolls back on a connection the database may have ended
    after the page was made (a restart), and that error would pass every error handler and
    turn a page already made into a 500. Then the connection is invalidated instead. Like
    Flask-SQLAlchemy's, the close keeps what objects loaded (a rollback would expire it).
    """
    try:
        db.session.close()
    except SQLAlchemyError:
        db.session().invalidate()
