"""What the processes of a failed test were doing, added to its report: the tail of every log
the test wrote (workers, servers it started), of the module's gunicorn, the test's Redis
database (the queues and what they hold) and the newest task rows of its databases.

A wait that times out then says not only what it waited for but where things stood.
"""

from collections.abc import Iterator
from pathlib import Path

import redis
from flask import Flask
from sqlalchemy import select

from microblog.extensions import db
from microblog.jobs.models import Task

TAIL = 3000  # characters of each log


def sections(funcargs: dict) -> Iterator[tuple[str, str]]:
    """Yield (title, text) for each thing the test's fixtures ran or hold."""
    tmp_path = funcargs.get("tmp_path")
    if isinstance(tmp_path, Path):
        for log in sorted(tmp_path.rglob("*.log")):
            yield f"log {log.relative_to(tmp_path)}", _tail(log)
    stacks, server = funcargs.get("live_stacks"), funcargs.get("gunicorn_server")
    if stacks is not None and isinstance(server, str):
        yield f"gunicorn {server}", stacks.gunicorn_log(server)[-TAIL:]
    database = funcargs.get("redis_server")
    if database is not None:
        yield f"redis {database.url}", _queues(database.url)
    for name in ("app", "live_app"):
        app = funcargs.get(name)
        if isinstance(app, Flask):
            yield f"tasks of {name}", _tasks(app)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-TAIL:]
    except OSError as error:
        return f"(unreadable: {error})"


def _queues(url: str) -> str:
    """Say what each Dramatiq key of the database holds."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        lines = []
        for key in sorted(client.scan_iter("dramatiq:*", count=1000)):
            kind = client.type(key).decode()
            size = {"list": client.llen, "zset": client.zcard, "hash": client.hlen,
                    "set": client.scard}.get(kind, lambda key: "?")(key)  # fmt: skip
            lines.append(f"{key.decode()}: {kind} of {size}")
        return "\n".join(lines) or "(no queue key)"
    except redis.RedisError as error:
        return f"(Redis did not answer: {error})"
    finally:
        client.close()


def _tasks(app: Flask) -> str:
    """List the newest tasks' ids, states, attempts and errors."""
    try:
        with app.app_context():
            rows = db.session.scalars(select(Task).order_by(Task.created_at.desc()).limit(5))
            return (
                "\n".join(
                    f"{t.id} {t.name} {t.status} attempts={t.attempts} done={t.done} "
                    f"error={t.error!r} updated={t.updated_at}"
                    for t in rows
                )
                or "(no task)"
            )
    except Exception as error:  # a report, whatever the database says
        return f"(could not read: {error})"
