"""Database engine settings that depend on the backend."""

import os
import sqlite3
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web read while a worker writes; the busy timeout waits out short writes
    # instead of failing with "database is locked"; SQLite ignores foreign keys by default.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def init_app(app: Flask) -> None:
    """Tune the engine Flask-SQLAlchemy created for this app."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            os.makedirs(app.instance_path, exist_ok=True)
            event.listen(db.engine, "connect", _tune_sqlite)


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
