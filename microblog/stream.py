"""``GET /stream``: the signed-in user's task events as Server-Sent Events.

Built on flask-sse: same message format, same ``publish``; what changes is how messages reach
listeners. Stock flask-sse opens one Redis connection per listener and only notices a closed
client at its next message. Here each web process holds one pattern subscription (users'
channels and the operators' one) shared by all its listeners, heartbeat comments go out twice
per ``SSE_HEARTBEAT_SECONDS`` so that a closed client is noticed and released within that
interval, and each stream ends after ``SSE_MAX_STREAM_SECONDS``; the browser then reconnects
with ``Last-Event-ID`` and resumes.
"""

import json
import logging
import os
import queue
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import redis
from flask import Flask, abort, current_app, request, stream_with_context, url_for
from flask_login import current_user
from flask_sse import Message, ServerSentEventsBlueprint

from microblog import metrics
from microblog.extensions import db
from microblog.jobs import events

log = logging.getLogger(__name__)

RETRY_MS = 3000
# A Redis stream id: two unsigned 64-bit integers in ASCII digits ("1700000000000-3").
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_CLOSED = object()  # put on a listener's queue when the shared subscription is lost


def event_key(event_id: str) -> tuple[int, int]:
    """Order stream ids: "1700000000000-3" → (1700000000000, 3)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class RenderedMessage(Message):
    """A flask-sse message rendered to its wire format once, however many streams send it."""

    def __str__(self) -> str:
        if not hasattr(self, "_wire"):
            self._wire = super().__str__()
        return self._wire


class Broadcaster:
    """One Redis pattern subscription per process, fanned out to in-process listeners."""

    def __init__(
        self, redis_url: str, patterns: tuple[str, ...] = ("user.*", events.OPERATORS)
    ) -> None:
        self.redis_url = redis_url
        self.patterns = patterns
        self._listeners: dict[str, set[queue.SimpleQueue]] = defaultdict(set)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="sse-broadcaster", daemon=True)
        self._thread.start()

    @property
    def listener_count(self) -> int:
        with self._lock:
            return sum(len(listeners) for listeners in self._listeners.values())

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def state(self) -> str:
        """Say whether events reach this process: "ok", "reconnecting" or "stopped"."""
        if not self._thread.is_alive():
            return "stopped"
        return "ok" if self._ready.is_set() else "reconnecting"

    def listen(self, channel: str) -> queue.SimpleQueue:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            self._listeners[channel].add(inbox)
        metrics.STREAMS_OPEN.inc()
        return inbox

    def leave(self, channel: str, inbox: queue.SimpleQueue) -> None:
        with self._lock:
            listeners = self._listeners.get(channel, set())
            if inbox not in listeners:
                return
            listeners.discard(inbox)
            if not listeners:
                del self._listeners[channel]
        metrics.STREAMS_OPEN.dec()

    def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                self._consume()
            except redis.RedisError as error:
                log.warning("event subscription lost (%s); retrying in %.1fs", error, delay)
            except Exception:  # never let one surprise end live updates for the whole process
                log.exception("event subscription failed; retrying in %.1fs", delay)
            subscribed = self._ready.is_set()
            self._ready.clear()
            self._close_all()
            delay = 0.5 if subscribed else min(delay * 2, 10)  # back off only while failing
            time.sleep(delay)

    def _consume(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_keepalive=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(*self.patterns)
            for _ in self.patterns:
                pubsub.get_message(timeout=5)  # the subscription confirmations
            self._ready.set()
            while True:
                raw = pubsub.get_message(timeout=30)
                if raw is None:
                    pubsub.ping()  # a dead connection fails here instead of hanging forever
                elif raw["type"] == "pmessage":
                    self._deliver(raw["channel"].decode(errors="replace"), raw["data"])
        finally:
            pubsub.close()
            client.close()

    def _deliver(self, channel: str, data: bytes) -> None:
        with self._lock:
            inboxes = list(self._listeners.get(channel, ()))
        if not inboxes:
            return
        try:
            message = RenderedMessage(**json.loads(data))
        except (ValueError, TypeError) as error:  # not what events.publish sends: drop it
            log.warning("dropped a malformed message on %s: %s", channel, error)
            return
        for inbox in inboxes:
            inbox.put(message)
        metrics.EVENTS_DELIVERED.inc(len(inboxes))

    def _close_all(self) -> None:
        with self._lock:
            inboxes = [inbox for listeners in self._listeners.values() for inbox in listeners]
        for inbox in inboxes:
            inbox.put(_CLOSED)


_creation = threading.Lock()


def broadcaster() -> Broadcaster:
    """Return this process's broadcaster, started on first use (after any fork)."""
    with _creation:  # the first requests arrive together; they must share one
        current = current_app.extensions.get("microblog.broadcaster")
        if current is None or current._pid != os.getpid():
            current = Broadcaster(current_app.config["REDIS_URL"])
            current_app.extensions["microblog.broadcaster"] = current
        return current


def resume_point() -> str | None:
    """Return the id the stream should resume after, from the header or the query."""
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if last_id is None:
        return None
    match = _EVENT_ID.fullmatch(last_id)
    if not match or any(int(part) >= 2**64 for part in match.groups("0")):
        abort(400, "Last-Event-ID is not an event id.")
    return last_id


class UserStreamBlueprint(ServerSentEventsBlueprint):
    """flask-sse's blueprint, private per user, resumable, on a shared subscription."""

    @property
    def redis(self) -> redis.Redis:
        return events.redis_client()  # one pool per process, not a client per publish

    def messages(
        self,
        channel: str = "sse",
        last_id: str | None = None,
        inbox: queue.SimpleQueue | None = None,
    ) -> Iterator[Message | None]:
        """Yield missed events after ``last_id``, then live ones, and None on each idle beat.

        ``inbox`` is a listener registered before the call, so that no event published
        between the replay and the live part is lost.
        """
        config = current_app.config
        if inbox is None:
            inbox = broadcaster().listen(channel)
        newest = (0, 0)
        for message in events.missed_since(channel, last_id) if last_id else ():
            newest = event_key(message.id)
            yield message
        deadline = time.monotonic() + config["SSE_MAX_STREAM_SECONDS"]
        # A write to a closed client fails only on the second try (the first fills the socket
        # buffer and draws a reset), so beat twice per interval to release it within one.
        beat = config["SSE_HEARTBEAT_SECONDS"] / 2
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = inbox.get(timeout=min(beat, remaining))
            except queue.Empty:
                yield None
                continue
            if message is _CLOSED:
                return
            if message.id is None or event_key(message.id) > newest:
                yield message

    def stream(self):
        if not current_user.is_authenticated:
            abort(401)
        return self.open_stream(events.channel_for(current_user.id))  # never from the request

    def open_stream(self, channel: str):
        """Answer with ``channel``'s events; the caller has checked who may read them."""
        last_id = resume_point()
        # A stream may stay open for minutes and needs no database: hand the connection back
        # to the pool now, or a few dozen open streams would exhaust it.
        db.session.close()
        hub = broadcaster()
        ready = hub.wait_ready(timeout=2)
        # Listen before the first byte goes out: whatever is published after the client sees
        # the response reaches it, even without a resume point.
        inbox = hub.listen(channel) if ready else None

        @stream_with_context
        def generate() -> Iterator[str]:
            yield f"retry: {RETRY_MS}\n\n"
            if inbox is None:
                return  # Redis is unreachable: end now; the browser retries after RETRY_MS
            try:
                for message in self.messages(channel, last_id, inbox):
                    yield ": heartbeat\n\n" if message is None else str(message)
            except redis.RedisError as error:
                log.warning("stream for %s ended: %s", channel, error)

        response = current_app.response_class(generate(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        if inbox is not None:
            response.call_on_close(lambda: hub.leave(channel, inbox))
        return response


sse = UserStreamBlueprint("events", __name__)
sse.add_url_rule("/stream", endpoint="stream", view_func=sse.stream)


def stream_url(channel: str | None = None, endpoint: str = "events.stream") -> str | None:
    """Return this page's stream URL with its resume point, or None if Redis is down.

    By default the signed-in user's stream; the admin page passes the operators' channel.
    """
    try:
        last_id = events.latest_id(channel or events.channel_for(current_user.id))
    except redis.RedisError:
        return None
    return url_for(endpoint, last_event_id=last_id)


def _hub() -> Broadcaster | None:
    hub = current_app.extensions.get("microblog.broadcaster")
    return hub if hub is not None and hub._pid == os.getpid() else None


def open_streams() -> int:
    """Return how many streams this process is serving."""
    hub = _hub()
    return hub.listener_count if hub is not None else 0


def subscription_state() -> str:
    """Say whether this process receives events: "idle" before its first stream, else
    "ok", "reconnecting" or "stopped"."""
    hub = _hub()
    return hub.state() if hub is not None else "idle"


def init_app(app: Flask) -> None:
    app.register_blueprint(sse)
