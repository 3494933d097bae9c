"""The real services the test session starts: smoke tests, and the renewal of databases."""

import smtplib
from email.message import EmailMessage

import psycopg
import pytest
import redis


def test_redis_server_answers_commands(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"


def test_smtp_server_captures_sent_messages(smtp_server, mailbox):
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "Smoke"
    message.set_content("héllo")
    with smtplib.SMTP("127.0.0.1", smtp_server.port) as smtp:
        smtp.send_message(message)
    assert [m["Subject"] for m in mailbox] == ["Smoke"]
    assert mailbox[0].get_payload(decode=True).decode().strip() == "héllo"


ADD_USER = """INSERT INTO "user" (username, email, password_hash, last_seen)
              VALUES (%s, %s || '@example.com', 'x', now())"""


def test_a_postgresql_database_given_back_comes_out_as_the_template_made_it(databases, tmp_path):
    # Given a migrated database a test filled, moved the ids of, and left a session open in
    url = databases.migrated("postgresql", tmp_path)
    name = url.rsplit("/", 1)[1]
    databases.postgres.execute_in(url, "ALTER SEQUENCE user_id_seq RESTART WITH 500")
    left_open = psycopg.connect(databases.postgres.dsn(name), autocommit=True, connect_timeout=5)
    left_open.execute(ADD_USER, ("left", "left"))
    # When it is given back and the next test asks for one
    databases.drop(url)
    again = databases.migrated("postgresql", tmp_path)
    # Then it is the same database, renewed: no row, ids from the start, no session of before
    assert again == url
    with psycopg.connect(databases.postgres.dsn(name), connect_timeout=5) as conn:
        assert conn.execute('SELECT count(*) FROM "user"').fetchone() == (0,)
        assert conn.execute(ADD_USER + " RETURNING id", ("new", "new")).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        left_open.execute("SELECT 1")
    left_open.close()
    databases.drop(again)


def test_a_postgresql_database_whose_schema_a_test_changed_is_not_handed_out_again(
    databases, tmp_path
):
    url = databases.migrated("postgresql", tmp_path)
    databases.postgres.execute_in(url, 'ALTER TABLE "user" ADD COLUMN extra integer')
    databases.drop(url)
    again = databases.migrated("postgresql", tmp_path)
    assert again != url
    with psycopg.connect(databases.postgres.dsn(again.rsplit("/", 1)[1])) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user'"
        ).fetchall()
    assert ("extra",) not in columns
    databases.drop(again)
