"""The schema comes only from migrations, and they match the models on both databases."""

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from microblog import create_app
from microblog.auth.models import find_user
from microblog.extensions import db
from microblog.search.index import declared_by_models
from tests.support.databases import migrate


@pytest.fixture
def empty_database(database, databases, tmp_path):
    urls: list[str] = []

    def make() -> str:
        urls.append(databases.empty(database, tmp_path))
        return urls[-1]

    yield make
    for url in urls:
        databases.drop(url)


def index_definitions(url: str) -> dict[str, str]:
    """Return every index's definition as the database itself states it, spacing normalised;
    with the search index's tables (SQLite), triggers, functions and column (PostgreSQL)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        with db.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                query = "SELECT name, sql FROM sqlite_master WHERE sql NOT NULL"
                query += " AND (type IN ('index', 'trigger') OR name LIKE 'post_fts%')"
                query += " AND tbl_name != 'alembic_version'"
            else:
                query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                query += " AND tablename != 'alembic_version'"
                query += " UNION ALL SELECT proname, pg_get_functiondef(oid) FROM pg_proc"
                query += " WHERE pronamespace = 'public'::regnamespace"
                query += " UNION ALL SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
                query += " WHERE NOT tgisinternal UNION ALL SELECT column_name, data_type"
                query += " FROM information_schema.columns WHERE column_name = 'search_vector'"
            rows = connection.execute(text(query)).all()
        db.engine.dispose()
    return {name: re.sub(r"\s+", " ", definition).strip() for name, definition in rows}


def test_migrations_build_exactly_the_schema_of_the_models(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database()})
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_name": declared_by_models}
            )
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == []


def test_migrated_indexes_equal_the_models_including_partial_conditions(empty_database):
    # Alembic's comparison ignores an index's WHERE clause; the database's own catalog doesn't.
    migrated, modelled = empty_database(), empty_database()
    migrate(migrated)
    app = create_app({"SQLALCHEMY_DATABASE_URI": modelled})
    with app.app_context():
        db.create_all()
        db.engine.dispose()

    from_migrations, from_models = index_definitions(migrated), index_definitions(modelled)
    assert from_migrations == from_models
    assert "WHERE" in from_models["uq_task_active_per_user"]
    assert "ix_post_search" in from_models or "post_fts_insert" in from_models


def test_migrations_downgrade_to_an_empty_database(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database()})
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert inspect(db.engine).get_table_names() == ["alembic_version"]
        db.engine.dispose()


def test_look_alike_accounts_made_before_the_rule_keep_working(empty_database):
    # Given accounts made before canonical names: two that differ only in case
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database()})
    with app.app_context():
        upgrade(revision="0002")
        for name, email in (("alice", "alice@example.com"), ("Alice", "ALICE@example.com"),
                            ("bob", "bob@example.com")):  # fmt: skip
            db.session.execute(
                text("INSERT INTO \"user\" (username, email, password_hash, last_seen) "
                     "VALUES (:name, :email, 'x', CURRENT_TIMESTAMP)"),
                {"name": name, "email": email},
            )  # fmt: skip
        db.session.commit()
        # When the migration adds the canonical keys
        upgrade()
        # Then the oldest look-alike holds each key, and every account is found by its name
        keys = db.session.execute(
            text('SELECT username, username_key, email_key FROM "user" ORDER BY id')
        ).all()
        assert keys == [
            ("alice", "alice", "alice@example.com"),
            ("Alice", None, None),
            ("bob", "bob", "bob@example.com"),
        ]
        assert [find_user(name).username for name in ("alice", "Alice", "ALICE", "BOB")] == [
            "alice", "Alice", "alice", "bob"
        ]  # fmt: skip
        db.session.remove()
        db.engine.dispose()
