"""SSE benchmark: 1,000 concurrent streams on one gunicorn process, ours vs stock flask-sse.

    python -m bench.sse_bench [--streams 1000] [--events 20]

Reports, for each endpoint: Redis connections used by the streams, publish-to-client latency
(p50/p99 over every stream and event), memory per stream, and how long the server takes to let
go of closed clients. Then, in Debian's chromium, the latency from clicking "Export my posts"
to the first event reaching the page.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import psutil
import redis
import requests

from bench.common import ROOT, scratch_dir, session_cookie
from devkit.services import MailCatcher, RedisServer, free_port, wait_until
from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs import events
from microblog.live import channel as live

PASSWORD = "bench-password-1"


class Stack:
    """Redis, a migrated SQLite database, gunicorn (1 process) and a worker."""

    def __init__(self, heartbeat: int) -> None:
        self.redis = RedisServer().start()
        self.mail = MailCatcher().start()
        self.dir = scratch_dir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.dir / 'bench.sqlite'}",
            "REDIS_URL": self.redis.url,
            "MAIL_PORT": str(self.mail.port),
            "MICROBLOG_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "1",
            "SSE_HEARTBEAT_SECONDS": str(heartbeat),
            "SSE_MAX_STREAM_SECONDS": "3600",
            "PUBLIC_URL": self.url,
        }
        self.app = create_app(
            {"SQLALCHEMY_DATABASE_URI": self.env["DATABASE_URL"], "REDIS_URL": self.redis.url}
        )
        with self.app.app_context():
            db.create_all()
            user = User(username="bench", email="bench@example.com")
            user.set_password(PASSWORD)
            db.session.add(user)
            db.session.commit()
            self.user_id = user.id
        log = (self.dir / "gunicorn.log").open("w")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.stock_wsgi:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1", "--threads", "2"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(self._up, 30, "gunicorn")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def web_worker(self) -> psutil.Process:
        return psutil.Process(self.web.pid).children()[0]

    def streams(self) -> int:
        return requests.get(self.url + "/healthz", timeout=5).json()["streams"]

    def session_cookie(self) -> str:
        return session_cookie(self.url, "bench", PASSWORD)

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process.poll() is None:
                process.terminate()
        for process in (self.web, self.worker):
            process.wait(timeout=30)
        self.mail.stop()
        self.redis.stop()


class Client:
    """One raw HTTP/1.1 event-stream client that timestamps every data line it reads."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, port: int, path: str, cookie: str, opened: asyncio.Event) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Cookie: {cookie}\r\nConnection: keep-alive\r\n\r\n".encode()
        )
        await self.writer.drain()
        opened.set()
        try:
            while line := await reader.readline():
                if b'"sent_at"' in line:
                    sent_at = json.loads(line[line.index(b"{") : line.rindex(b"}") + 1])["sent_at"]
                    self.latencies.append(time.time() - sent_at)
        except (ConnectionError, asyncio.CancelledError):
            pass

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure(stack: Stack, kind: str, streams: int, count: int, cookie: str) -> dict:
    client = redis.Redis.from_url(stack.redis.url)
    path = "/stream" if kind == "ours" else "/stock-stream?channel=bench"

    def subscribed() -> int:
        if kind == "ours":
            return stack.streams()
        return client.execute_command("PUBSUB", "NUMSUB", "bench")[1]

    before_connections = client.info("clients")["connected_clients"]
    before_rss = stack.web_worker().memory_info().rss
    clients = [Client() for _ in range(streams)]
    tasks = []
    for batch in range(0, streams, 100):
        events_opened = [asyncio.Event() for _ in clients[batch : batch + 100]]
        for c, opened in zip(clients[batch : batch + 100], events_opened, strict=True):
            tasks.append(asyncio.create_task(c.run(stack.port, path, cookie, opened)))
        await asyncio.gather(*(e.wait() for e in events_opened))
    await wait_async(lambda: subscribed() >= streams, 60, f"{streams} {kind} streams")
    connections = client.info("clients")["connected_clients"] - before_connections
    rss_per_stream = (stack.web_worker().memory_info().rss - before_rss) / streams

    for _ in range(count):
        publish(stack, kind, client)
        await asyncio.sleep(0.1)
    await wait_async(
        lambda: sum(len(c.latencies) for c in clients) >= streams * count, 30, "every event"
    )
    latencies = sorted(x for c in clients for x in c.latencies)

    closed_at = time.monotonic()
    for c in clients:
        c.close()
    released = await released_within(lambda: subscribed() == 0, 40)
    release = f"{released - closed_at:.1f} s" if released else "not within 40 s"
    if not released and kind == "stock":
        # Stock flask-sse notices a closed client only when a write to it fails.
        for sent in range(1, 6):
            publish(stack, kind, client)
            if after := await released_within(lambda: subscribed() == 0, 2):
                release += (
                    f"; released {after - closed_at:.0f} s after closing, {sent} messages later"
                )
                break
    for task in tasks:
        task.cancel()
    return {
        "redis_connections": connections,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "kb_per_stream": rss_per_stream / 1024,
        "release": release,
    }


def publish(stack: Stack, kind: str, client: redis.Redis) -> None:
    data = {"task_id": "bench", "progress": 1, "sent_at": time.time()}
    if kind == "ours":
        with stack.app.app_context():
            live.publish(stack.user_id, events.PROGRESS, data)
    else:  # what stock sse.publish sends
        client.publish("bench", json.dumps({"data": data, "type": "task.progress"}))


async def wait_async(predicate, timeout: float, what: str) -> None:
    if not await released_within(predicate, timeout):
        raise TimeoutError(f"timed out waiting for {what}")


async def released_within(predicate, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


def click_to_first_event(stack: Stack, runs: int) -> list[float]:
    """Milliseconds from the click on "Export my posts" to the first event in the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(base_url=stack.url)
        page.goto("/auth/login")
        page.fill("#username", "bench")
        page.fill("#password", PASSWORD)
        page.click("#submit")
        results = []
        for _ in range(runs):
            page.goto("/user/bench")
            page.wait_for_function("() => !document.getElementById('export-button').disabled")
            page.evaluate("""() => {
                window.firstEventAt = null;
                new MutationObserver(() => { window.firstEventAt ??= performance.now(); })
                  .observe(document.getElementById('tasks'), {subtree: true, childList: true,
                                                                attributes: true});
            }""")
            clicked = page.evaluate("() => performance.now()")
            page.click("#export-button")
            page.wait_for_function("() => window.firstEventAt !== null")
            results.append(page.evaluate("() => window.firstEventAt") - clicked)
            page.wait_for_selector("#tasks .task-download", timeout=30_000)
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--heartbeat", type=int, default=15)
    parser.add_argument("--browser-runs", type=int, default=5)
    args = parser.parse_args()
    stack = Stack(args.heartbeat)
    try:
        cookie = stack.session_cookie()
        print(f"{args.streams} concurrent streams on one gunicorn process (gevent), "
              f"{args.events} events each; heartbeat {args.heartbeat} s")  # fmt: skip
        for kind in ("ours", "stock"):
            row = asyncio.run(measure(stack, kind, args.streams, args.events, cookie))
            print(
                f"{kind:>5}: Redis connections for the streams {row['redis_connections']:>4}, "
                f"latency p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms, "
                f"{row['kb_per_stream']:.0f} KB/stream, closed clients released: {row['release']}"
            )
        clicks = click_to_first_event(stack, args.browser_runs)
        print(
            "browser click to first event: "
            + ", ".join(f"{ms:.0f}" for ms in clicks)
            + f" ms (median {statistics.median(clicks):.0f} ms)"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
