"""Search benchmark: /search at 100,000 and 1,000,000 posts on SQLite and PostgreSQL under wrk,
against ``LIKE '%text%'`` in the same run; and the index migration timed on those posts.

    python -m bench.search_bench [--sizes 100000 1000000] [--kinds sqlite postgresql]
                                 [--seconds 10]

For each kind and size it builds a database through the migrations up to the revision before
search, fills it in bulk (1,000 authors; each post a dozen words drawn Zipf-like from a
2,000-word vocabulary), then times the search migration on it, and then marks 70 % of the
posts English as detection would have (an UPDATE, timed too: what backfilling costs). On
PostgreSQL a writer inserts a post every 50 ms while the index is built, and the slowest
insert is reported: the build must not lock writers out. gunicorn (``gunicorn.conf.py``, 2
gevent workers) serves ``bench.like_wsgi``; wrk (1 thread, 8 connections, signed in) drives
each query shape in turn, and again with 2 connections (one per worker: the latency of a
request that does not queue behind others):

- a rare word (in 1 post of 20,000), a common word (in 1 post of 5), a two-word phrase (in 1
  post of 100), a username prefix (10 people, and no post);
- the same texts through ``/like/search``, the scan a database without a search index does.

Before timing, each query's first page is checked against the posts the generator wrote.
"""

import argparse
import random
import re
import shutil
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import requests
from flask_migrate import upgrade
from werkzeug.security import generate_password_hash

from bench.common import ROOT, scratch_dir
from bench.pages_bench import PASSWORD, SQLITE_TIMESTAMP, Server, load
from devkit.services import RedisServer
from microblog import create_app
from microblog.extensions import db
from tests.support.databases import PostgresServer

AUTHORS = 1_000
RARE, COMMON, PHRASE = "zanzibar", "weather", ("morning", "coffee")
RARE_EVERY, COMMON_EVERY, PHRASE_EVERY = 20_000, 5, 100
QUERIES = {
    "rare word": RARE,
    "common word": COMMON,
    "two-word phrase": f'"{" ".join(PHRASE)}"',
    "username prefix": "user12",
}
PER_PAGE = 25
ENGLISH = "UPDATE post SET language = 'en' WHERE id % 10 < 7"
START = datetime(2020, 1, 1)


def vocabulary(rng: random.Random, size: int = 2_000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "da", "go", "ha", "ji"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(words - {RARE, COMMON, *PHRASE})


def posts(count: int, seed: int = 1):
    """Yield (body, author) for each post, oldest first; the nth is "#n ..."."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    for n in range(count):
        body = rng.choices(words, weights, k=rng.randint(8, 14))
        if n % COMMON_EVERY == 0:
            body.insert(rng.randrange(len(body)), COMMON)
        if n % PHRASE_EVERY == 1:
            at = rng.randrange(len(body))
            body[at:at] = PHRASE
        if n % RARE_EVERY == 2:
            body.insert(rng.randrange(len(body)), RARE)
        yield f"#{n} " + " ".join(body), rng.randint(1, AUTHORS)


def expected(count: int) -> dict[str, list[str]]:
    """Return, per query shape, the first page's post numbers, newest first."""
    newest: dict[str, list[str]] = {name: [] for name in QUERIES}
    contains = {
        "rare word": lambda words: RARE in words,
        "common word": lambda words: COMMON in words,
        "two-word phrase": lambda words: " ".join(PHRASE) in " ".join(words),
        "username prefix": lambda words: False,
    }
    for body, _ in posts(count):
        number, *words = body.split()
        for name, test in contains.items():
            if test(words):
                newest[name] = ([number] + newest[name])[:PER_PAGE]
    return newest


def users() -> list[tuple]:
    joined = START.strftime(SQLITE_TIMESTAMP)
    password_hash = generate_password_hash(PASSWORD)
    return [
        (f"user{n}", f"user{n}", f"user{n}@example.com", f"user{n}@example.com", joined,
         password_hash)
        for n in range(1, AUTHORS + 1)
    ]  # fmt: skip


USER_INSERT = (
    'INSERT INTO "user" (username, username_key, email, email_key, last_seen, password_hash,'
    " is_admin, unread_messages) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, false, 0)"
)


def fill_sqlite(path: Path, count: int) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(USER_INSERT.format("?"), users())
        connection.executemany(
            "INSERT INTO post (body, user_id, timestamp) VALUES (?, ?, ?)",
            (
                (*row, (START + timedelta(seconds=n)).strftime(SQLITE_TIMESTAMP))
                for n, row in enumerate(posts(count))
            ),
        )
    with connection:
        connection.execute("ANALYZE")
    connection.close()


def fill_postgresql(dsn: str, count: int) -> None:
    with psycopg.connect(dsn) as connection:
        with connection.cursor() as cursor:
            cursor.executemany(USER_INSERT.format("%s"), users())
            with cursor.copy("COPY post (body, user_id, timestamp) FROM STDIN") as copy:
                for n, row in enumerate(posts(count)):
                    copy.write_row((*row, START + timedelta(seconds=n)))
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")


class Writer(threading.Thread):
    """Insert a post every 50 ms until stopped; keep the slowest insert's time."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.slowest, self.inserts = dsn, 0.0, 0
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while not self.done.wait(0.05):
                started = time.perf_counter()
                connection.execute(
                    "INSERT INTO post (body, user_id, timestamp) VALUES ('written meanwhile', 1,"
                    " now())"
                )
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.inserts += 1

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def migrate(url: str, revision: str = "head") -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://127.0.0.1:1/0"})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision=revision)
        db.engine.dispose()


def build(kind: str, size: int, directory: Path, postgres: PostgresServer | None) -> tuple:
    """Build and fill a database, then time the search migration; return (url, migration)."""
    if kind == "sqlite":
        path = directory / "bench.sqlite"
        url = f"sqlite:///{path}"
        migrate(url, "0016")
        fill_sqlite(path, size)
        started = time.perf_counter()
        migrate(url)
        migration = {"seconds": time.perf_counter() - started}
        with sqlite3.connect(path) as connection:
            started = time.perf_counter()
            connection.execute(ENGLISH)
        connection.close()
        return url, migration | {"languages_seconds": time.perf_counter() - started}
    name = f"bench_{size}"
    postgres.execute(f"DROP DATABASE IF EXISTS {name}")
    postgres.execute(f"CREATE DATABASE {name}")
    url = postgres.url(name)
    migrate(url, "0016")
    fill_postgresql(postgres.dsn(name), size)
    writer = Writer(postgres.dsn(name))
    writer.start()
    started = time.perf_counter()
    migrate(url)
    seconds = time.perf_counter() - started
    writer.stop()
    started = time.perf_counter()
    postgres.execute_in(url, ENGLISH)
    languages = time.perf_counter() - started
    postgres.execute_in(url, "VACUUM ANALYZE post")
    return url, {"seconds": seconds, "slowest_insert_ms": writer.slowest * 1000,
                 "inserts": writer.inserts, "languages_seconds": languages}  # fmt: skip


def first_page(server: Server, cookie: str, path: str, query: str) -> list[str]:
    page = requests.get(server.url + path, params={"q": query}, headers={"Cookie": cookie},
                        timeout=120).text  # fmt: skip
    return re.findall(r'post-body">(?:<mark>)?(#\d+)', page)


def people(server: Server, cookie: str, query: str) -> list[str]:
    page = requests.get(server.url + "/search", params={"q": query}, headers={"Cookie": cookie},
                        timeout=60).text  # fmt: skip
    return re.findall(r'person">\s*<span[^>]*>[^<]*</span>\s*<a[^>]*>([^<]+)<', page)


def measure(kind: str, size: int, redis_url: str, seconds: int, postgres) -> dict:
    directory = scratch_dir()
    try:
        url, migration = build(kind, size, directory, postgres)
        print(f"{kind}, {size:,} posts: the search migration took {migration}", flush=True)
        server = Server(url, redis_url, directory / "gunicorn.log", app="bench.like_wsgi:app")
        try:
            cookie = server.sign_in("user1")
            want = expected(size)
            for name, query in QUERIES.items():
                for path in ("/search", "/like/search"):
                    got = first_page(server, cookie, path, query)
                    if path == "/search" and got != want[name]:
                        raise RuntimeError(f"{kind} {size}: {name} found {got[:5]}…, "
                                           f"expected {want[name][:5]}…")  # fmt: skip
            found = people(server, cookie, QUERIES["username prefix"])
            if found != ["user12", "user120", "user121", "user122", "user123"]:
                raise RuntimeError(f"{kind} {size}: people found {found}")
            results = {"migration": migration}
            for name, query in QUERIES.items():
                runs = (("index", "/search", 8), ("LIKE", "/like/search", 8),
                        ("index, 2 connections", "/search", 2))  # fmt: skip
                for approach, path, connections in runs:
                    target = path + "?" + requests.compat.urlencode({"q": query})
                    row = load(server, target, cookie, seconds, connections)
                    results[approach, name] = row
                    print(f"{kind}, {size:,} posts, {name}, {approach}: {row['rate']:,.1f} req/s,"
                          f" p99 {row['p99_ms']:.1f} ms", flush=True)  # fmt: skip
            return results
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("This benchmark drives the pages with wrk: apt-get install wrk")
    redis = RedisServer().start()
    postgres = PostgresServer().start() if "postgresql" in args.kinds else None
    try:
        runs = {
            (kind, size): measure(kind, size, redis.url, args.seconds, postgres)
            for kind in args.kinds
            for size in args.sizes
        }
    finally:
        redis.stop()
        if postgres:
            postgres.stop()
    report(runs, args.kinds, args.sizes)


def report(runs: dict, kinds: list[str], sizes: list[int]) -> None:
    columns = " | ".join(f"{size:,} posts: req/s, p50, p99" for size in sizes)
    print(f"| database | query | approach | {columns} |")
    print("|---|---|---|" + "---|" * len(sizes))
    for kind in kinds:
        for name in QUERIES:
            for approach in ("index", "LIKE", "index, 2 connections"):
                cells = []
                for size in sizes:
                    row = runs[kind, size][approach, name]
                    cells.append(f"{row['rate']:,.1f}, {row['p50_ms']:.1f} ms, "
                                 f"{row['p99_ms']:.1f} ms")  # fmt: skip
                print(f"| {kind} | {name} | {approach} | " + " | ".join(cells) + " |")
    for kind in kinds:
        for size in sizes:
            run = runs[kind, size]
            ratio = run["index", "rare word"]["rate"] / run["LIKE", "rare word"]["rate"]
            print(f"{kind}, {size:,} posts: rare word {ratio:,.0f}× LIKE's rate; "
                  f"migration {run['migration']}")  # fmt: skip
        if len(sizes) > 1:
            small, large = min(sizes), max(sizes)
            for name in QUERIES:
                rates = [runs[kind, size]["index", name]["rate"] for size in (small, large)]
                print(f"{kind}, {name}: rate at {large:,} is {rates[1] / rates[0] - 1:+.0%} "
                      f"of its rate at {small:,}")  # fmt: skip


if __name__ == "__main__":
    main()
