"""Pages benchmark: the list pages at 100,000 and 1,000,000 posts under wrk, keyset vs OFFSET.

    python -m bench.pages_bench [--sizes 100000 1000000] [--seconds 10]

For each size it builds a SQLite database through the migrations: 1,000 authors writing the
posts (a random author each, one second apart), a reader who follows 200 of them, a popular
user whom every other account follows, 20 random follows per author, and 10,000 more accounts
that only follow (so the popular user has 11,000 followers). gunicorn runs from
``gunicorn.conf.py`` (2 gevent workers) with ``bench.offset_wsgi``, which serves the pages as
they are and, under ``/offset``, as they were before keyset paging. wrk (1 thread, 8
connections, signed in as the reader) drives each page in turn; wrk and gunicorn share the
machine's cores, so ``/auth/login`` (no database work) is the ceiling the others are read
against.
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import requests
from flask_migrate import upgrade
from werkzeug.security import generate_password_hash

from bench.common import ROOT, make_app, scratch_dir, session_cookie
from devkit.services import RedisServer, free_port, wait_until
from microblog.extensions import db

AUTHORS = 1_000
ONLY_FOLLOWERS = 10_000
READER, POPULAR = 1, 2  # ids: the reader follows 200 authors; everyone follows the popular one
PASSWORD = "bench-password-1"
WARM_UP_SECONDS = 2
PAGES = {
    "/auth/login": "/auth/login",
    "/ home": "/",
    "/explore": "/explore",
    "/user/<popular>": f"/user/user{POPULAR}",
    "/user/<popular>/followers": f"/user/user{POPULAR}/followers",
}
BEFORE_KEYSET = {"/ home", "/explore", "/user/<popular>"}  # what bench.offset_wsgi serves
# SQLAlchemy's storage format for timestamps in SQLite, which range comparisons rely on.
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


def build(path: Path, posts: int, seed: int = 1) -> None:
    """Create the schema by the migrations, then fill it in bulk."""
    app = make_app(path, "redis://127.0.0.1:1/0")
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()
    rng = random.Random(seed)
    password_hash = generate_password_hash(PASSWORD)
    joined = datetime(2019, 1, 1).strftime(SQLITE_TIMESTAMP)
    users = [
        (n, f"user{n}", f"user{n}@example.com", f"user{n}", f"user{n}@example.com", joined)
        for n in range(1, AUTHORS + ONLY_FOLLOWERS + 1)
    ]
    follows = {(n, POPULAR) for n in range(1, AUTHORS + ONLY_FOLLOWERS + 1) if n != POPULAR}
    follows |= {(READER, n) for n in range(2, 202)}
    for n in range(2, AUTHORS + 1):
        follows |= {(n, other) for other in rng.sample(range(1, AUTHORS + 1), 20) if other != n}
    start = datetime(2020, 1, 1)
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            "INSERT INTO user (id, username, email, username_key, email_key, last_seen,"
            f" password_hash) VALUES (?, ?, ?, ?, ?, ?, '{password_hash}')",
            users,
        )
        connection.executemany(
            "INSERT INTO followers (follower_id, followed_id, created_at) VALUES (?, ?, ?)",
            (
                (
                    *pair,
                    (start + timedelta(seconds=rng.randint(0, 10**8))).strftime(SQLITE_TIMESTAMP),
                )
                for pair in sorted(follows)
            ),
        )
        for first in range(0, posts, 50_000):
            connection.executemany(
                "INSERT INTO post (body, timestamp, user_id) VALUES (?, ?, ?)",
                (
                    (
                        f"Post number {i}, a sentence or two about the day, the weather and "
                        "whatever else came to mind.",
                        (start + timedelta(seconds=i)).strftime(SQLITE_TIMESTAMP),
                        rng.randint(1, AUTHORS),
                    )
                    for i in range(first, min(first + 50_000, posts))
                ),
            )
    with connection:
        connection.execute("ANALYZE")
    connection.close()


class Server:
    """gunicorn from gunicorn.conf.py, serving ``bench.offset_wsgi`` (or another benchmark's
    app) on a database: a SQLite file, or any database's URL."""

    def __init__(
        self, database: Path | str, redis_url: str, log: Path, app: str = "bench.offset_wsgi:app"
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "DATABASE_URL": database if isinstance(database, str) else f"sqlite:///{database}",
            "REDIS_URL": redis_url,
            "MICROBLOG_BIND": self.url.removeprefix("http://"),
            "WEB_CONCURRENCY": "2",
            "SECRET_KEY": "bench",
            "HTTPS_ONLY": "0",
        }
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(self._up, 60, f"gunicorn (log: {log})")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def sign_in(self, username: str) -> str:
        """Return the Cookie header of a session signed in as ``username``."""
        cookie = session_cookie(self.url, username, PASSWORD)
        home = requests.get(self.url + "/", headers={"Cookie": cookie}, timeout=10)
        if home.status_code != 200 or home.history:
            raise RuntimeError(f"signing in as {username} failed: {home.status_code}")
        return cookie

    def connections_per_worker(self) -> list[int]:
        """Return how many client connections each worker process holds."""
        port = int(self.url.rsplit(":", 1)[1])
        return [
            sum(c.laddr.port == port and c.status == "ESTABLISHED" for c in w.net_connections())
            for w in psutil.Process(self.process.pid).children()
        ]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def load(server: "Server", path: str, cookie: str, seconds: int, connections: int = 8) -> dict:
    """Drive one URL with wrk (with that Cookie header, if any); return rate and latencies."""
    url = server.url + path
    headers = {"Cookie": cookie} if cookie else {}
    response = requests.get(url, headers=headers, timeout=60, allow_redirects=False)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}, not 200")
    wrk(url, cookie, WARM_UP_SECONDS, server, connections)  # caches, pools, first templates
    result = wrk(url, cookie, seconds, server, connections)
    if result["bad_status"] or result["socket_errors"]:
        raise RuntimeError(f"wrk on {url} saw errors: {result}")
    result["rate"] = result["requests"] / result["seconds"]
    return result


def wrk(url: str, cookie: str, seconds: int, server: "Server", connections: int = 8) -> dict:
    """Run wrk once, again if its connections all landed on one gunicorn worker.

    wrk opens its connections at once, and an idle worker sometimes accepts every one of
    them before the other wakes: that run would measure one core, not the server.
    """
    for _ in range(5):
        run = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(ROOT / "bench" / "wrk_report.lua"), url,
             *(["-H", f"Cookie: {cookie}"] if cookie else [])],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Each worker's most connections seen during the run: a worker busy with a slow
        # request accepts the ones waiting for it only once it is done.
        spread = server.connections_per_worker()
        while run.poll() is None:
            time.sleep(min(0.5, seconds / 4))
            spread = [
                max(pair) for pair in zip(spread, server.connections_per_worker(), strict=True)
            ]
        out, _ = run.communicate(timeout=seconds + 60)
        if run.returncode:
            raise RuntimeError(f"wrk failed on {url}")
        if min(spread) > 0:
            return json.loads(out.strip().splitlines()[-1])
    raise RuntimeError(f"wrk's connections kept landing on one worker: {spread}")


def chrome_costs(database: Path, redis_url: str, repeat: int = 2_000) -> dict[str, float]:
    """Time, in µs, what every signed-in page does besides its list, and the home list."""
    from flask_login import login_user

    from microblog.auth.models import User
    from microblog.auth.sessions import load_user, open_sign_in
    from microblog.jobs.models import tasks_to_show
    from microblog.jobs.views import inject_tasks
    from microblog.live.stream import stream_url
    from microblog.models import utcnow
    from microblog.posts.models import page_of, timeline_of
    from microblog.posts.views import record_last_seen

    app = make_app(database, redis_url)
    with app.test_request_context("/"):
        reader = db.session.get(User, READER)
        open_sign_in(reader)
        db.session.commit()
        token = reader.sign_in_token
        login_user(load_user(token))
        parts = {
            "the signed-in user (sign-in lookup)": lambda: load_user(token),
            "last seen (checked; written once a minute)": record_last_seen,
            "task cards (query)": lambda: tasks_to_show(READER, utcnow()),
            "stream resume point (one Redis call)": stream_url,
            "all of the page's context (cards and stream)": inject_tasks,
            "the home timeline's page (for comparison)": lambda: page_of(timeline_of(reader), 25),
        }
        costs = {}
        for name, part in parts.items():
            part()
            start = time.perf_counter()
            for _ in range(repeat):
                part()
            costs[name] = (time.perf_counter() - start) / repeat * 1e6
    with app.app_context():
        db.engine.dispose()
    return costs


def measure(size: int, redis_url: str, seconds: int) -> dict[tuple[str, str], dict]:
    directory = scratch_dir()
    build(directory / "bench.sqlite", size)
    os.sync()  # the new database written out before anything is timed
    for name, micros in chrome_costs(directory / "bench.sqlite", redis_url).items():
        print(f"{size:,} posts: {name}: {micros:,.0f} µs")
    server = Server(directory / "bench.sqlite", redis_url, directory / "gunicorn.log")
    try:
        cookie = server.sign_in(f"user{READER}")
        results = {}
        login = load(server, "/auth/login", "", seconds)  # signed out: signed in, it redirects
        for name, path in PAGES.items():
            if path != "/auth/login":
                results["keyset", name] = load(server, path, cookie, seconds)
            if name in BEFORE_KEYSET:
                results["offset", name] = load(server, "/offset" + path, cookie, seconds)
        # The ceiling is the better of a run before and one after the pages: a machine busy
        # with something else for a while lowers a rate, it never raises one.
        again = load(server, "/auth/login", "", seconds)
        results["keyset", "/auth/login"] = max(login, again, key=lambda row: row["rate"])
        return results
    finally:
        server.stop()
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("This benchmark drives the pages with wrk: apt-get install wrk")
    redis = RedisServer().start()
    try:
        runs = {size: measure(size, redis.url, args.seconds) for size in args.sizes}
    finally:
        redis.stop()
    sizes = " | ".join(f"{size:,} posts: req/s, p50, p99" for size in args.sizes)
    print(f"| page | approach | {sizes} |")
    print("|---|---|" + "---|" * len(args.sizes))
    ceiling = {size: runs[size]["keyset", "/auth/login"]["rate"] for size in args.sizes}
    for name in PAGES:
        for approach in ("keyset", "offset"):
            if (approach, name) not in runs[args.sizes[0]]:
                continue
            cells = []
            for size in args.sizes:
                row = runs[size][approach, name]
                share = row["rate"] / ceiling[size]
                cells.append(
                    f"{row['rate']:,.0f} ({share:.0%} of login), "
                    f"{row['p50_ms']:.1f} ms, {row['p99_ms']:.1f} ms"
                )
            print(f"| `{name}` | {approach} | " + " | ".join(cells) + " |")
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for name in PAGES:
            change = runs[large]["keyset", name]["rate"] / runs[small]["keyset", name]["rate"] - 1
            print(f"{name}: rate at {large:,} posts is {change:+.0%} of its rate at {small:,}")


if __name__ == "__main__":
    main()
