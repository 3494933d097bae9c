"""Messages benchmark: the inbox and the unread badge at 1,000 and 1,000,000 messages, under wrk.

    python -m bench.messages_bench [--sizes 1000 1000000] [--seconds 10]

For each size it builds a SQLite database through the migrations: 1,000 users, and that many
messages between random pairs, one second apart, a tenth of them to the reader (user1), whose
unread count holds all of those. gunicorn runs from ``gunicorn.conf.py`` (2 gevent workers),
wrk drives each page signed in as the reader, as the pages benchmark does: ``/auth/account``
(a page that reads nothing but the badge), then ``/messages`` (the inbox's newest page; the
first load clears the count, so wrk measures reading). ``/auth/login`` is the ceiling the
others are read against. The unread count's own read is timed in-process too, against the
seed's way (a COUNT of the messages newer than the last read).
"""

import argparse
import os
import random
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask_migrate import upgrade
from werkzeug.security import generate_password_hash

from bench.common import ROOT, make_app, scratch_dir
from bench.pages_bench import PASSWORD, SQLITE_TIMESTAMP, Server, load
from devkit.services import RedisServer
from microblog.extensions import db

USERS = 1_000
READER = 1
PAGES = {"/auth/login": "", "badge (/auth/account)": "/auth/account", "/messages": "/messages"}


def build(path: Path, messages: int, seed: int = 1) -> int:
    """Create the schema by the migrations, then fill it in bulk; return the reader's unread."""
    app = make_app(path, "redis://127.0.0.1:1/0")
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()
    rng = random.Random(seed)
    password_hash = generate_password_hash(PASSWORD)
    start = datetime(2020, 1, 1)
    connection = sqlite3.connect(path)
    received = 0
    with connection:
        connection.executemany(
            "INSERT INTO user (id, username, email, username_key, email_key, last_seen,"
            f" password_hash) VALUES (?, ?, ?, ?, ?, ?, '{password_hash}')",
            [(n, f"user{n}", f"user{n}@example.com", f"user{n}", f"user{n}@example.com",
              start.strftime(SQLITE_TIMESTAMP)) for n in range(1, USERS + 1)],
        )  # fmt: skip

        def rows(first: int, last: int):
            nonlocal received
            for i in range(first, last):
                recipient = READER if i % 10 == 0 else rng.randint(2, USERS)
                sender = rng.randint(2, USERS)
                received += recipient == READER
                sent_at = (start + timedelta(seconds=i)).strftime(SQLITE_TIMESTAMP)
                yield (f"Message {i}: a line or two, as people write.", sender, recipient, sent_at)

        for first in range(0, messages, 50_000):
            connection.executemany(
                "INSERT INTO message (body, sender_id, recipient_id, timestamp)"
                " VALUES (?, ?, ?, ?)",
                rows(first, min(first + 50_000, messages)),
            )
        connection.execute("UPDATE user SET unread_messages = ? WHERE id = ?", (received, READER))
    with connection:
        connection.execute("ANALYZE")
    connection.close()
    return received


def unread_micros(database: Path, redis_url: str, repeat: int = 200) -> dict[str, float]:
    """Time, in µs, the two ways to know the unread count: the column kept beside the user
    (this design), and the seed's COUNT of the inbox's messages newer than the last read."""
    from sqlalchemy import func, select

    from microblog.messages.models import Message, unread_count

    never_read = datetime(2000, 1, 1, tzinfo=UTC)
    ways = {
        "counter column": lambda: unread_count(READER),
        "COUNT over the inbox index": lambda: db.session.scalar(
            select(func.count()).where(
                Message.recipient_id == READER, Message.timestamp > never_read
            )  # fmt: skip
        ),
    }
    app = make_app(database, redis_url)
    costs = {}
    with app.app_context():
        for name, way in ways.items():
            way()
            started = time.perf_counter()
            for _ in range(repeat):
                way()
            costs[name] = (time.perf_counter() - started) / repeat * 1e6
        db.engine.dispose()
    return costs


def measure(size: int, redis_url: str, seconds: int) -> dict[str, dict]:
    directory = scratch_dir()
    received = build(directory / "bench.sqlite", size)
    os.sync()
    for way, micros in unread_micros(directory / "bench.sqlite", redis_url).items():
        print(f"{size:,} messages ({received:,} unread by the reader): {way}: {micros:,.0f} µs")
    server = Server(directory / "bench.sqlite", redis_url, directory / "gunicorn.log")
    try:
        cookie = server.sign_in(f"user{READER}")
        results = {"/auth/login": load(server, "/auth/login", "", seconds)}
        results["badge (/auth/account)"] = load(server, "/auth/account", cookie, seconds)
        results["/messages"] = load(server, "/messages", cookie, seconds)
        again = load(server, "/auth/login", "", seconds)
        results["/auth/login"] = max(results["/auth/login"], again, key=lambda row: row["rate"])
        return results
    finally:
        server.stop()
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("This benchmark drives the pages with wrk: apt-get install wrk")
    redis = RedisServer().start()
    try:
        runs = {size: measure(size, redis.url, args.seconds) for size in args.sizes}
    finally:
        redis.stop()
    sizes = " | ".join(f"{size:,} messages: req/s, p50, p99" for size in args.sizes)
    print(f"| page | {sizes} |")
    print("|---|" + "---|" * len(args.sizes))
    for name in PAGES:
        cells = []
        for size in args.sizes:
            row, ceiling = runs[size][name], runs[size]["/auth/login"]["rate"]
            cells.append(f"{row['rate']:,.0f} ({row['rate'] / ceiling:.0%} of login), "
                         f"{row['p50_ms']:.1f} ms, {row['p99_ms']:.1f} ms")  # fmt: skip
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for name in PAGES:
            change = runs[large][name]["rate"] / runs[small][name]["rate"] - 1
            print(f"{name}: rate at {large:,} messages is {change:+.0%} of its rate at {small:,}")


if __name__ == "__main__":
    main()
