"""A pytest plugin for testing job types on real services: ``pytest -p devkit.pytest_plugin``.

It starts a real Redis server and a real SMTP server (aiosmtpd) on free loopback ports once
per session, and gives each test:

- ``mailbox``: the messages the SMTP server received during the test;
- ``worker``: a real Dramatiq worker, in this process, on the app's broker;
- ``recorded_events``: every event published on any user's channel during the test;
- ``run_job(job, user_id)``: launch a job for a user, wait for its end, return its recording;
- ``golden(name, recording)``: compare a recording with ``golden/<name>.json`` beside the test
  module, ignoring ids and timings; ``pytest --update-golden`` writes the files.

The project provides ``app``: an app from ``create_app`` whose ``REDIS_URL`` is
``redis_server.url``, whose ``MAIL_SERVER``/``MAIL_PORT`` point at ``smtp_server``, whose
``JOB_MODULES`` include the module under test, on a migrated database.
"""

import difflib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq import Worker
from flask import Flask
from flask_sse import Message

from devkit.services import MailCatcher, RedisDatabase, RedisServer
from microblog.jobs.launch import launch
from microblog.jobs.recording import Recording, comparable, replay
from microblog.redis_clients import channel_prefix

__all__ = ["EventRecorder", "Recording", "replay"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="write the golden event files from this run instead of comparing with them",
    )


# Databases of the session's Redis: one per test, and more than a process ever runs tests.
REDIS_DATABASES = 20_000


@pytest.fixture(scope="session")
def redis_instance() -> Iterator[RedisServer]:
    """A real Redis server for the session, on a free loopback port."""
    server = RedisServer(databases=REDIS_DATABASES).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_instance: RedisServer) -> RedisDatabase:
    """A database of this test's own on the session's Redis (``.url`` names it): its queues,
    throttles and marks are in no other test's, and its live channels are named after it
    (pub/sub ignores database numbers; see ``microblog.redis_clients.channel_prefix``), so no
    test sees what another left or published, and none has anything to clean."""
    return redis_instance.fresh_database()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[MailCatcher]:
    """A real SMTP server (aiosmtpd) for the session, on a free loopback port."""
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


@pytest.fixture
def mailbox(smtp_server: MailCatcher) -> list:
    """The messages the SMTP server receives during this test."""
    smtp_server.messages.clear()
    return smtp_server.messages


@contextmanager
def in_process_worker(app: Flask, threads: int = 2) -> Iterator[Worker]:
    """Run a real Dramatiq worker in this process, on the app's Redis broker, for the block."""
    worker = Worker(app.extensions["dramatiq"], worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def worker(app: Flask) -> Iterator[Worker]:
    """A real Dramatiq worker, in this process, for the whole test."""
    with in_process_worker(app) as running:
        yield running


class EventRecorder:
    """Subscribe to users' channels on the real Redis and keep every flask-sse message."""

    def __init__(self, redis_url: str, pattern: str = "user.*") -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._prefix = channel_prefix({"REDIS_URL": redis_url})  # the database's channels
        self._pubsub.psubscribe(self._prefix + pattern)
        self._pubsub.get_message(timeout=5)  # the subscription confirmation
        self._changed = threading.Condition()
        self.messages: list[tuple[str, Message]] = []
        self.times: list[float] = []  # when each message arrived (time.monotonic())
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._running = True
        self._thread.start()

    def _listen(self) -> None:
        while self._running:
            raw = self._pubsub.get_message(timeout=0.2)
            if raw and raw["type"] == "pmessage":
                message = Message(**json.loads(raw["data"]))
                with self._changed:
                    channel = raw["channel"].decode().removeprefix(self._prefix)
                    self.messages.append((channel, message))
                    self.times.append(time.monotonic())
                    self._changed.notify_all()

    def of(self, channel: str) -> list[Message]:
        with self._changed:
            return [m for c, m in self.messages if c == channel]

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30) -> Message:
        """Return the first recorded message matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for _, message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.type, m.data.get("status")) for _, m in self.messages]
                    raise TimeoutError(f"no matching event within {timeout}s; saw {seen}")
                self._changed.wait(remaining)

    def finished(self, task_id: str, timeout: float = 60) -> Message:
        return self.wait_for(
            lambda m: m.type == "task.finished" and m.data["task_id"] == task_id, timeout
        )

    def recording(self, task_id: str) -> Recording:
        """Return the events of one task recorded so far, with their pacing."""
        with self._changed:
            mine = [(m, t) for (_, m), t in zip(self.messages, self.times, strict=True)
                    if m.data.get("task_id") == task_id]  # fmt: skip
        if not mine:
            return Recording("", [])
        start = mine[0][1]
        return Recording(
            mine[0][0].data.get("name", ""),
            [{"type": m.type, "data": m.data, "after_ms": round((t - start) * 1000)}
             for m, t in mine],
        )  # fmt: skip

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def recorded_events(redis_server: RedisDatabase) -> Iterator[EventRecorder]:
    """Every event published on any user's channel while the test runs."""
    recorder = EventRecorder(redis_server.url)
    yield recorder
    recorder.close()


@pytest.fixture
def run_job(app: Flask, worker: Worker, recorded_events: EventRecorder):
    """``run_job(job, user_id)``: run one task of ``job`` for that user on the real worker;
    return its recording once it has ended."""

    def run(job: dramatiq.Actor, user_id: int, timeout: float = 60) -> Recording:
        with app.app_context():
            task_id = launch(job, user_id).id
        recorded_events.finished(task_id, timeout)
        return recorded_events.recording(task_id)

    return run


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """``golden(name, recording)``: fail with a readable diff unless the recording's events
    match ``golden/<name>.json`` beside the test module (ids and timings aside)."""
    directory = Path(request.path).parent / "golden"
    update = request.config.getoption("--update-golden")

    def check(name: str, recording: Recording) -> None:
        path = directory / f"{name}.json"
        if update:
            recording.save(path)
            return
        if not path.exists():
            pytest.fail(f"no golden file {path}: record one with pytest --update-golden")
        expected, actual = comparable(Recording.load(path)), comparable(recording)
        if expected != actual:
            diff = difflib.unified_diff(
                _lines(expected), _lines(actual), f"golden/{name}.json", "this run", lineterm=""
            )
            pytest.fail("the events differ from the golden file:\n" + "\n".join(diff))

    return check


def _lines(events: list[dict]) -> list[str]:
    return json.dumps(events, indent=1, ensure_ascii=False, sort_keys=True).splitlines()
