"""Test data and readers: bulk posts and tasks, task rows, event streams, a dead relay."""

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update

from devkit.services import free_port
from microblog.extensions import db
from microblog.jobs.models import ACTIVE_STATUSES, Task
from microblog.models import utcnow
from microblog.posts.models import Post


def insert_posts(user_id: int, bodies: list[str], start: datetime | None = None) -> None:
    """Insert posts quickly, one second apart, oldest first (inside an app context)."""
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        {"body": body, "user_id": user_id, "timestamp": start + timedelta(seconds=i)}
        for i, body in enumerate(bodies)
    ]
    for i in range(0, len(rows), 5000):
        db.session.execute(insert(Post), rows[i : i + 5000])
    db.session.commit()


class SSEReader:
    """Read a live Server-Sent Events response in a thread; keep events and comments.

    The stream ends when the server ends it or when :meth:`close` is called. Anything else that
    stops the reading (a malformed event, a connection torn down mid-stream) is kept in
    ``error`` and raised by :meth:`wait_for` and :meth:`close`, so it never looks like a
    normal end.
    """

    def __init__(self, response) -> None:
        self.response = response
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.retry: int | None = None
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event: dict = {}
        try:
            for line in self.response.iter_lines(chunk_size=None, decode_unicode=True):
                with self._changed:
                    event = self._take(line, event)
                    self._changed.notify_all()
        except Exception as error:
            if not self._closing:  # our own close() interrupts the read; that is no failure
                self.error = error
        finally:
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    def _take(self, line: str, event: dict) -> dict:
        """Apply one line of the stream; return the event being assembled."""
        if line == "":
            if "data" in event:
                event["data"] = json.loads(event["data"])
                self.events.append(event)
            return {}
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return event
        field, _, value = line.partition(":")
        if field == "retry":
            self.retry = int(value)
        elif field in ("id", "event", "data"):
            event[field] = value.removeprefix(" ")
        else:
            raise ValueError(f"unknown field in event stream: {line!r}")
        return event

    def wait_for(self, predicate: Callable[["SSEReader"], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                self._raise_error()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out waiting for {what}; ended: {self.ended.is_set()}, "
                        f"comments: {self.comments[:3]}, events: {self.events}"
                    )
                self._changed.wait(remaining)

    def wait_for_events(self, count: int, timeout: float = 10) -> list[dict]:
        self.wait_for(lambda r: len(r.events) >= count, timeout, f"{count} events")
        return list(self.events)

    def wait_for_end(self, timeout: float) -> None:
        """Wait until the server ends the stream normally."""
        self.wait_for(lambda r: r.ended.is_set(), timeout, "the stream to end")
        self._raise_error()

    def close(self) -> None:
        self._closing = True
        self.response.close()
        self._thread.join(timeout=5)
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the event stream broke: {self.error!r}") from self.error


def make_task(app, user_id: int, status: str = "queued", created_ago: timedelta | None = None):
    """Launch an export for ``user_id`` (its message really sent), then set its row as asked."""
    from microblog.exports.jobs import export_posts
    from microblog.jobs.launch import launch

    with app.app_context():
        task_id = launch(export_posts, user_id).id
        values = {"status": status}
        if status in ("failed", "succeeded", "cancelled"):
            values["finished_at"] = utcnow()
        if status == "failed":
            values["error"] = "The email could not be sent."
        if created_ago:
            values["created_at"] = utcnow() - created_ago
        db.session.execute(update(Task).where(Task.id == task_id).values(**values))
        db.session.commit()
        return task_id


class Tarpit:
    """A server (a mail relay, a sentinel) that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection = self._server.accept()[0]
            except OSError:  # the listening socket was shut down
                return
            with self._lock:
                if self._closed:  # accepted while closing: never left to the collector
                    connection.close()
                    return
                self._held.append(connection)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            held, self._held = self._held, []
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._server.close()
        for connection in held:
            connection.close()


def task_row(app, task_id: str) -> Task:
    """Return the task's row as the database holds it now, read in a session of its own."""
    with app.app_context():
        task = db.session.get(Task, task_id)
        db.session.expunge(task)
        return task


def emails_to(mailbox: list, username: str) -> int:
    """Count the emails to ``username`` among the session relay's."""
    return [m["To"] for m in mailbox].count(f"{username}@example.com")


def final_row(app, task_id: str, user_id: int) -> Task:
    """Return the task's row, checking that none of the user's tasks is left active."""
    with app.app_context():
        active = select(Task).where(Task.user_id == user_id, Task.status.in_(ACTIVE_STATUSES))
        assert db.session.scalars(active).all() == []
        task = db.session.get(Task, task_id)
        db.session.expunge(task)
        return task
