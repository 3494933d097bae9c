"""SSE at scale: many users' streams on several web processes, per-channel subscriptions
against the previous design (one ``PSUBSCRIBE user.*`` per process), measured in one run;
and the events on a three-shard Redis Cluster (sharded pub/sub) against one Redis.

    python -m bench.sse_scale_bench [--quick] [--layout spread|dense|cluster]

Two layouts, each served by real gunicorn (gevent) on Redis and SQLite:

- 2,000 users × 1 stream on 4 web processes;
- 1,000 users × 10 streams on 1 web process (10,000 streams).

Sessions are real sign-ins made by the app; the streams are raw asyncio HTTP clients in this
process; events go through ``microblog.jobs.live.publish`` from publisher processes, each
to a random user, at rising rates. For each rate: delivered/expected (and duplicates),
publish-to-client latency p50/p99, CPU per web process, Redis's output per event in bytes, and
copies per event (what the web processes received from Redis, over events published).
"""

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil
import redis
import requests
from flask_login.utils import _create_identifier

from bench.common import ROOT, scratch_dir
from devkit.redis_topologies import RedisClusterServers
from devkit.services import RedisServer, free_port, wait_until
from microblog import create_app
from microblog.auth.models import User
from microblog.auth.sessions import open_sign_in
from microblog.config import from_environment
from microblog.extensions import db
from microblog.jobs import events
from microblog.live import channel as live

# Name: (app, environment). "unfrozen" is per-channel without the collector's periodic freeze.
DESIGNS = {
    "per-channel": ("wsgi:app", {}),
    "unfrozen": ("wsgi:app", {"GC_FREEZE_SECONDS": "0"}),
    "pattern": ("bench.pattern_wsgi:app", {}),
    # The events on the site's Redis Cluster (its URL is added when the cluster is started).
    "cluster": ("wsgi:app", {"EVENTS_REDIS_CLUSTER": "1"}),
}
# A progress event as the export job sends it, plus what the benchmark needs to measure.
SAMPLE = {
    "task_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "name": "export_posts",
    "description": "Export my posts",
    "status": "running",
    "attempt": 1,
    "progress": 42,
    "done": 4200,
    "total": 10000,
    "error": None,
    "url": None,
    "summary": None,
    "finished_at": None,
}
SEQ = re.compile(rb'"sent_at": ([0-9.]+), "seq": (\d+)')  # flask-sse sorts the keys


DENSE = ("per-channel", "unfrozen", "pattern")
ON_CLUSTER = ("per-channel", "cluster")  # one Redis, then the events on a three-shard cluster


@dataclass
class Layout:
    users: int
    streams_per_user: int
    processes: int
    rates: list[int]
    seconds: float = 5.0  # each rate's step
    designs: tuple[str, ...] = ("per-channel", "pattern")

    def __str__(self) -> str:
        return (
            f"{self.users:,} users × {self.streams_per_user} stream"
            f"{'s' if self.streams_per_user > 1 else ''} on {self.processes} process"
            f"{'es' if self.processes > 1 else ''}"
        )


class Site:
    """Redis (and a Redis Cluster, if asked) and a SQLite database with ``users`` users, each
    signed in once."""

    def __init__(self, users: int, cluster: bool = False) -> None:
        self.redis = RedisServer().start()
        self.cluster = RedisClusterServers().start() if cluster else None
        self.dir = scratch_dir()
        self.database = f"sqlite:///{self.dir / 'bench.sqlite'}"
        app = create_app({"SQLALCHEMY_DATABASE_URI": self.database, "REDIS_URL": self.redis.url})
        self.cookies: dict[int, str] = {}
        with app.app_context():
            db.create_all()
            password = User(username="x", email="x@example.com")
            password.set_password("bench-password-1")  # one hash for everyone: hashing is slow
            people = [User(username=f"u{n}", email=f"u{n}@example.com") for n in range(users)]
            for user in people:
                user.password_hash = password.password_hash
            db.session.add_all(people)
            db.session.flush()
            signer = app.session_interface.get_signing_serializer(app)
            with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
                identifier = _create_identifier()  # this client's, as Flask-Login computes it
            for user in people:
                open_sign_in(user)
                # What Flask-Login puts in the session cookie at sign-in.
                session = {"_user_id": user.get_id(), "_fresh": True, "_id": identifier}
                self.cookies[user.id] = f"session={signer.dumps(session)}"
            db.session.commit()
        self.user_ids = sorted(self.cookies)

    def events_env(self, design: str) -> dict[str, str]:
        """Where ``design``'s events go, as environment variables."""
        env = dict(DESIGNS[design][1])
        if design == "cluster":
            env["EVENTS_REDIS_URL"] = self.cluster.url
        return env

    def event_servers(self, design: str) -> list[redis.Redis]:
        """A client of each Redis server the events of ``design`` go through."""
        if design == "cluster":
            return [redis.Redis(port=port) for port in self.cluster.shard_masters()]
        return [redis.Redis.from_url(self.redis.url)]

    def stop(self) -> None:
        self.redis.stop()
        if self.cluster is not None:
            self.cluster.stop()


class Web:
    """gunicorn with ``processes`` gevent workers serving ``design``."""

    def __init__(self, site: Site, design: str, processes: int) -> None:
        self.port = free_port()
        self.metrics_token = secrets.token_hex(8)
        env = {
            **os.environ,
            "DATABASE_URL": site.database,
            "REDIS_URL": site.redis.url,
            "MICROBLOG_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(processes),
            "SSE_MAX_STREAM_SECONDS": "3600",
            "METRICS_TOKEN": self.metrics_token,
            "LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(scratch_dir()),
            **site.events_env(design),
        }
        env.pop("PYTHONPATH", None)
        self.design = design
        self.log = site.dir / f"gunicorn-{design}-{processes}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--access-logfile",
             "/dev/null", DESIGNS[design][0]],
            cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(lambda: len(self.workers()) == processes and self._answers(), 60, "gunicorn")

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def scrape(self) -> dict[str, float]:
        """Read this gunicorn's own /metrics (all its processes): events received from Redis,
        full collections and their total pause, pauses over 100 ms."""
        text = requests.get(
            f"http://127.0.0.1:{self.port}/metrics",
            headers={"Authorization": f"Bearer {self.metrics_token}"},
            timeout=30,
        ).text

        def total(pattern: str) -> float:
            return sum(float(v) for v in re.findall(rf"^{pattern} (\S+)$", text, re.MULTILINE))

        return {
            "received": total("microblog_sse_events_received_total"),
            "full": total(r'microblog_gc_pause_seconds_count\{generation="2"\}'),
            "full_seconds": total(r'microblog_gc_pause_seconds_sum\{generation="2"\}'),
            "long": total(r"microblog_gc_pause_seconds_count\{[^}]*\}")
            - total(r'microblog_gc_pause_seconds_bucket\{generation="\d",le="0.1"\}'),
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Receipts:
    """What every stream has read: copies and latencies per event sequence number."""

    copies: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def take(self, chunk: bytes, now: float) -> None:
        for match in SEQ.finditer(chunk):
            seq = int(match.group(2))
            self.copies[seq] = self.copies.get(seq, 0) + 1
            self.latencies.append(now - float(match.group(1)))


async def stream(port: int, cookie: str, receipts: Receipts, opened: asyncio.Future) -> None:
    """One raw HTTP/1.1 client of /stream; resolves ``opened`` once the first bytes arrive
    (the server writes them after Redis has confirmed the channel)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"retry: ")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        opened.set_result(None)
    except Exception as error:  # noqa: BLE001 - reported by the opener
        opened.set_exception(error)
        return
    pending = b""
    try:
        while chunk := await reader.read(65536):
            pending += chunk
            complete = pending.rfind(b"\n\n") + 2
            if complete > 1:
                receipts.take(pending[:complete], time.time())
                pending = pending[complete:]
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def open_streams(port: int, cookies: list[str], receipts: Receipts) -> list[asyncio.Task]:
    tasks, loop = [], asyncio.get_running_loop()
    for start in range(0, len(cookies), 250):
        opened = [loop.create_future() for _ in cookies[start : start + 250]]
        for cookie, future in zip(cookies[start : start + 250], opened, strict=True):
            tasks.append(asyncio.create_task(stream(port, cookie, receipts, future)))
        await asyncio.wait_for(asyncio.gather(*opened), timeout=120)
    return tasks


async def publish(
    redis_url: str, users: list[int], rate: int, seconds: float, first: int,
    events_env: dict[str, str],
) -> tuple[int, float]:  # fmt: skip
    """Publish ``rate × seconds`` events to random users from enough publisher processes;
    return how many were published and in how long. Sequence numbers start at ``first``."""
    count = int(rate * seconds)
    processes = max(1, math.ceil(rate / 1500))
    children = []
    for n in range(processes):
        share = range(first + n, first + count, processes)
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.sse_scale_bench",
                "--publisher",
                json.dumps(
                    {
                        "redis": redis_url,
                        "events": events_env,
                        "users": users,
                        "rate": rate / processes,
                        "start": share.start,
                        "stop": share.stop,
                        "step": share.step,
                    }
                ),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
        )
    total, longest = 0, 0.0
    for child in children:
        out, _ = await child.communicate()
        if child.returncode:
            raise RuntimeError("a publisher failed")
        report = json.loads(out)
        total += report["published"]
        longest = max(longest, report["seconds"])
    return total, longest


def publisher(spec: dict) -> None:
    """Publish events spec["start"]:spec["stop"]:spec["step"] at spec["rate"] per second."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "REDIS_URL": spec["redis"],
                      **from_environment(spec["events"])})  # fmt: skip
    users, rate = spec["users"], spec["rate"]
    seqs = range(spec["start"], spec["stop"], spec["step"])
    began = time.monotonic()
    with app.app_context():
        for n, seq in enumerate(seqs):
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = SAMPLE | {"seq": seq, "sent_at": time.time()}
            live.publish(random.choice(users), events.PROGRESS, data)
    print(json.dumps({"published": len(seqs), "seconds": time.monotonic() - began}))


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


async def run_layout(site: Site, layout: Layout, design: str, scale: float) -> list[dict]:
    """Open the layout's streams on a new gunicorn serving ``design``, then measure each
    rate for ``layout.seconds × scale``; the first row also says what opening cost."""
    web = Web(site, design, layout.processes)
    receipts = Receipts()
    users = site.user_ids[: layout.users]
    cookies = [site.cookies[u] for u in users for _ in range(layout.streams_per_user)]
    random.shuffle(cookies)
    rows = []
    try:
        rss = sum(w.memory_info().rss for w in web.workers())
        scraped = await asyncio.to_thread(web.scrape)
        began = time.monotonic()
        tasks = await open_streams(web.port, cookies, receipts)
        opening = {
            "design": design,
            "opening_s": time.monotonic() - began,
            "kb_per_stream": (sum(w.memory_info().rss for w in web.workers()) - rss)
            / len(cookies)
            / 1024,
            "opening_full_gcs": (await asyncio.to_thread(web.scrape))["full"] - scraped["full"],
        }
        first = 0
        for rate in layout.rates:
            row = await measure(site, web, layout, receipts, rate, layout.seconds * scale, first)
            row |= opening
            print(format_row(row), flush=True)
            rows.append(row)
            first += row["published"]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        web.stop()
    return rows


async def measure(
    site: Site, web: Web, layout: Layout, receipts: Receipts, rate: int, seconds: float, first: int
) -> dict:
    """Publish at ``rate`` for ``seconds`` (sequence numbers from ``first``); wait for every
    copy (15 s at most) and report what arrived, how fast, and at what cost."""
    servers = site.event_servers(web.design)
    workers = web.workers()
    cpu = [w.cpu_times() for w in workers]
    out_before = [server.info("stats")["total_net_output_bytes"] for server in servers]
    commands_before = [server.info("stats")["total_commands_processed"] for server in servers]
    scraped = await asyncio.to_thread(web.scrape)
    wall = time.monotonic()
    users = site.user_ids[: layout.users]
    published, publishing = await publish(site.redis.url, users, rate, seconds, first,
                                          site.events_env(web.design))  # fmt: skip
    wall = time.monotonic() - wall
    cpu = [
        (sum(w.cpu_times()[:2]) - sum(before[:2])) / wall
        for w, before in zip(workers, cpu, strict=True)
    ]
    outs = [server.info("stats")["total_net_output_bytes"] - before
            for server, before in zip(servers, out_before, strict=True)]  # fmt: skip
    commands = [server.info("stats")["total_commands_processed"] - before
                for server, before in zip(servers, commands_before, strict=True)]  # fmt: skip
    out = sum(outs)
    per_event = layout.streams_per_user
    expected = published * per_event
    seqs = range(first, first + published)

    def delivered() -> int:
        return sum(min(receipts.copies.get(s, 0), per_event) for s in seqs)

    deadline = time.monotonic() + 15
    while delivered() < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # any duplicates arrive now
    latencies = sorted(receipts.latencies)
    receipts.latencies.clear()
    scraped = {k: v - scraped[k] for k, v in (await asyncio.to_thread(web.scrape)).items()}
    for server in servers:
        server.close()
    return {
        "rate": rate, "achieved": published / publishing, "published": published,
        "expected": expected, "delivered": delivered(),
        "duplicates": sum(max(0, receipts.copies.get(s, 0) - per_event) for s in seqs),
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else math.nan,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else math.nan,
        "max_ms": latencies[-1] * 1000 if latencies else math.nan,
        "cpu": cpu, "out_bytes": out / published, "copies": scraped["received"] / published,
        "full_gcs": scraped["full"], "full_gc_ms": scraped["full_seconds"] * 1000,
        "long_pauses": scraped["long"],
        # Each Redis server's share of the work: output bytes, and commands (the publishes)
        "out_shares": [o / out for o in outs] if out else [],
        "command_shares": [c / sum(commands) for c in commands] if sum(commands) else [],
    }  # fmt: skip


def format_row(row: dict) -> str:
    cpu = " ".join(f"{share:.0%}" for share in row["cpu"])
    return (
        f"  {row['design']:>11} {row['rate']:>5}/s ({row['achieved']:>4.0f}) "
        f"delivered {row['delivered']:>7,}/"
        f"{row['expected']:<7,} dup {row['duplicates']:<3} p50 {row['p50_ms']:6.1f} ms "
        f"p99 {row['p99_ms']:7.1f} ms max {row['max_ms']:7.1f} ms  CPU/process [{cpu}]  "
        f"Redis out {row['out_bytes']:6.0f} B/event, {row['copies']:.2f} copies/event  "
        f"full GCs {row['full_gcs']:.0f} ({row['full_gc_ms']:.0f} ms), "
        f"pauses > 100 ms: {row['long_pauses']:.0f}"
        + (f"  shards: out {' '.join(f'{x:.0%}' for x in row['out_shares'])}, commands "
           f"{' '.join(f'{x:.0%}' for x in row['command_shares'])}"
           if len(row["out_shares"]) > 1 else "")
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller layouts, shorter steps")
    parser.add_argument("--scale", type=float, default=1.0, help="lengthen each step so many times")
    parser.add_argument("--layout", choices=["spread", "dense", "cluster"],
                        help="run only this layout")  # fmt: skip
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        return publisher(json.loads(args.publisher))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one file per client stream
    if args.quick:
        layouts = [Layout(200, 1, 4, [100, 1000], 2), Layout(100, 10, 1, [100], 2, DENSE),
                   Layout(300, 1, 3, [100, 1000], 2, ON_CLUSTER)]  # fmt: skip
    else:
        layouts = [
            Layout(2000, 1, 4, [100, 1000, 3000, 5000]),
            Layout(1000, 10, 1, [100, 300, 1000], 15, DENSE),
            Layout(4500, 1, 3, [300, 1000, 3000], 5, ON_CLUSTER),
        ]
    if args.layout:
        layouts = [layouts[["spread", "dense", "cluster"].index(args.layout)]]
    cluster = any("cluster" in layout.designs for layout in layouts)
    site = Site(max(layout.users for layout in layouts), cluster=cluster)
    try:
        for layout in layouts:
            print(f"{layout}:", flush=True)
            for design in layout.designs:
                row = asyncio.run(run_layout(site, layout, design, args.scale))[0]
                print(
                    f"  ({design}: {row['opening_s']:.1f} s to open the streams, "
                    f"{row['kb_per_stream']:.0f} KB of web memory per stream, "
                    f"{row['opening_full_gcs']:.0f} full collections meanwhile)",
                    flush=True,
                )
    finally:
        site.stop()


if __name__ == "__main__":
    main()
