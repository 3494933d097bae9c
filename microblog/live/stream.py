"""``GET /stream``: the signed-in user's live channel as Server-Sent Events.

Built on flask-sse: same message format, same ``publish``; what changes is how messages reach
listeners. Stock flask-sse opens one Redis connection per listener and only notices a closed
client at its next message. Here each web process holds one Redis connection, subscribed to
exactly the channels its open streams read (a user's channel from their first stream to
their last), heartbeat comments go out twice per ``SSE_HEARTBEAT_SECONDS`` so that a closed
client is noticed and released within that interval, and each stream ends after
``SSE_MAX_STREAM_SECONDS``; the browser then reconnects with ``Last-Event-ID`` and resumes.

A stream belongs to the sign-in it was opened with. Revoking sign-ins (logout, a password
change, "sign out everywhere") or the admin role (signals of :mod:`microblog.auth.sessions`,
sent once the revocation is committed) publishes a ``stream.close`` message that
ends the streams it names at once, in whichever process holds them; it never reaches a
browser. A stream checks its sign-in again once Redis confirms its channel and after every
lost subscription, so a close published while it was starting, or while Redis was away,
cannot be missed.
"""

import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator

import redis
from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    has_request_context,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_sse import Message, ServerSentEventsBlueprint
from sqlalchemy.exc import SQLAlchemyError

from microblog import metrics
from microblog.auth.models import User
from microblog.auth.sessions import (
    SIGN_IN_ENDED,
    admin_revoked,
    load_user,
    sign_ins_closed,
    token_hash,
)
from microblog.extensions import db
from microblog.i18n import current_language
from microblog.live import subscription
from microblog.live.channel import (
    OPERATORS,
    WATCHING_SECONDS,
    channel_for,
    event_types,
    latest_id,
    localizer,
    mark_operators_watching,
    missed_since,
    redis_client,
)
from microblog.live.subscription import ShardedSubscription, Subscription
from microblog.redis_clients import channel_prefix, events_on_cluster

log = logging.getLogger(__name__)

RETRY_MS = 3000
# A Redis stream id: two unsigned 64-bit integers in ASCII digits ("1700000000000-3").
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_RESYNC = object()  # put in an inbox after a lost subscription is back: read the log since
_CLOSE = object()  # put in an inbox whose sign-in or role was revoked: end the stream
CLOSE = "stream.close"  # the message type that revokes streams; data: user_id, sign_ins
SUBSCRIBE_BATCH = 500  # channels per SUBSCRIBE when resubscribing after a reconnect


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


def for_reader(message: Message) -> str:
    """Return ``message``'s wire format for the current request's reader: its data localized
    in the request's language when its type says how (``declare_event_types``), rendered once
    per language however many streams send it."""
    localize = localizer(message.type)
    if localize is None:
        return str(message)
    language = current_language()
    rendered = message.__dict__.setdefault("_by_language", {})
    if language not in rendered:
        try:
            data = localize(message.data)
        except Exception:  # a malformed event must not end the stream: send it as it came
            log.exception("could not localize a %s event", message.type)
            data = message.data
        rendered[language] = str(Message(data, type=message.type, id=message.id))
    return rendered[language]


class Inbox(queue.Queue):
    """One stream's messages waiting to be written, at most ``maxsize``, and whose stream it
    is (the user and the hash of the sign-in it was opened with).

    A client that stops reading fills it; it is then closed (``overflowed``) rather than
    allowed to grow: the stream ends and the browser resumes from the log.
    """

    def __init__(
        self, channel: str, maxsize: int, user_id: int | None = None, sign_in: str | None = None
    ) -> None:
        super().__init__(maxsize)
        self.channel = channel
        self.user_id, self.sign_in = user_id, sign_in
        self.overflowed = False

    def revoked_by(self, data: dict) -> bool:
        """Say whether a close message's ``data`` names this stream."""
        if self.user_id is None or data.get("user_id") != self.user_id:
            return False
        sign_ins = data.get("sign_ins")
        return sign_ins is None or self.sign_in in sign_ins


class Broadcaster:
    """One subscription per process (one Redis connection, or one per cluster shard: see
    :mod:`microblog.live.subscription`) to the channels its listeners read.

    A channel is subscribed when its first listener arrives and unsubscribed when its last
    leaves; :meth:`wait_subscribed` tells a stream when Redis has confirmed, so that it can
    replay the log knowing that anything later will arrive live. Requests to subscribe and
    unsubscribe are queued to the one thread that owns the connection. When the connection is
    lost, streams stay open: the thread reconnects after a jittered, growing delay (so that
    every process does not knock at once), subscribes every channel that still has
    listeners, and tells each of those listeners to read what it missed from the log.
    """

    POLL_SECONDS = 0.05  # how long requests may wait for the connection's thread

    def __init__(
        self, subscribe: str | Callable[[], Subscription | ShardedSubscription],
        inbox_size: int = 1000,
    ) -> None:  # fmt: skip
        """``subscribe`` opens the subscription; a URL: to that one Redis."""
        if isinstance(subscribe, str):
            url = subscribe
            subscribe = Subscription.opener(lambda **options: redis.Redis.from_url(url, **options),
                                            channel_prefix({"REDIS_URL": url}))  # fmt: skip
        self.open_subscription = subscribe
        self.inbox_size = inbox_size
        self._listeners: dict[str, set[Inbox]] = {}
        self._confirmed: dict[str, threading.Event] = {}  # per subscribed channel
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._resync: set[str] = set()  # resubscribed after a reconnect, not yet confirmed
        self._was_connected = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="sse-broadcaster", daemon=True)
        self._thread.start()

    @property
    def listener_count(self) -> int:
        with self._lock:
            return sum(len(listeners) for listeners in self._listeners.values())

    @property
    def channel_count(self) -> int:
        with self._lock:
            return len(self._listeners)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def state(self) -> str:
        """Say whether events reach this process: "ok", "reconnecting" or "stopped"."""
        if not self._thread.is_alive():
            return "stopped"
        return "ok" if self._ready.is_set() else "reconnecting"

    def listen(self, channel: str, user_id: int | None = None, sign_in: str | None = None) -> Inbox:
        """Register a listener of ``channel``, subscribing the channel if it is the first."""
        inbox = Inbox(channel, self.inbox_size, user_id, sign_in)
        with self._lock:
            listeners = self._listeners.setdefault(channel, set())
            listeners.add(inbox)
            if channel not in self._confirmed:
                self._confirmed[channel] = threading.Event()
                self._requests.put(channel)
        metrics.STREAMS_OPEN.inc()
        return inbox

    def wait_subscribed(self, inbox: Inbox, timeout: float) -> bool:
        """Wait until Redis delivers ``inbox``'s channel to this process."""
        with self._lock:
            confirmed = self._confirmed.get(inbox.channel)
        return confirmed is not None and confirmed.wait(timeout)

    def leave(self, inbox: Inbox) -> None:
        """Drop a listener; the channel is unsubscribed after its last."""
        with self._lock:
            listeners = self._listeners.get(inbox.channel, set())
            if inbox not in listeners:
                return
            listeners.discard(inbox)
            if not listeners:
                del self._listeners[inbox.channel]
                self._requests.put(inbox.channel)
        metrics.STREAMS_OPEN.dec()

    def stop(self) -> None:
        """Close the connection and end the thread (its listeners hear nothing more)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._consume()
            except redis.RedisError as error:
                log.warning("event subscription lost (%s); retrying in about %.1fs", error, delay)
            except Exception:  # never let one surprise end live updates for the whole process
                log.exception("event subscription failed; retrying in about %.1fs", delay)
            connected = self._ready.is_set()
            self._ready.clear()
            with self._lock:
                for confirmed in self._confirmed.values():
                    confirmed.clear()  # until the new connection confirms it again
            delay = 0.5 if connected else min(delay * 2, 10)  # back off only while failing
            self._stop.wait(delay * random.uniform(0.5, 1.5))

    def _consume(self) -> None:
        pubsub = self.open_subscription()
        try:
            pubsub.check()  # fail here, not on the first subscription, if Redis is away
            with self._lock:
                wanted = list(self._listeners)
            if self._was_connected:  # their listeners missed what came while we were away
                self._resync = set(wanted)
            self._was_connected = True
            for start in range(0, len(wanted), SUBSCRIBE_BATCH):
                pubsub.subscribe(wanted[start : start + SUBSCRIBE_BATCH])
            self._ready.set()
            idle_since = time.monotonic()
            while not self._stop.is_set():
                self._apply_requests(pubsub)
                raw = pubsub.get_message(timeout=self.POLL_SECONDS)
                if raw is not None:
                    idle_since = time.monotonic()
                    self._handle(raw)
                elif pubsub.subscribed and time.monotonic() - idle_since > 30:
                    pubsub.ping()  # a dead connection fails here instead of hanging forever
                    idle_since = time.monotonic()
        finally:
            pubsub.close()

    def _apply_requests(self, pubsub: Subscription | ShardedSubscription) -> None:
        """Subscribe or unsubscribe the channels whose listeners came or went since."""
        subscribe, unsubscribe = [], []
        while True:
            try:
                channel = self._requests.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                if channel in self._listeners:
                    subscribe.append(channel)
                elif channel in self._confirmed:
                    del self._confirmed[channel]
                    unsubscribe.append(channel)
        if subscribe:
            pubsub.subscribe(subscribe)  # a channel already subscribed is confirmed again
        if unsubscribe:
            pubsub.unsubscribe(unsubscribe)

    def _handle(self, raw: dict) -> None:
        kind, channel = raw["type"], raw["channel"]
        channel = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
        if kind == "message":
            self._deliver(channel, raw["data"])
        elif kind == "subscribe":
            with self._lock:
                confirmed = self._confirmed.get(channel)
                inboxes = list(self._listeners.get(channel, ()))
            if confirmed is not None:
                confirmed.set()
            if channel in self._resync:
                self._resync.discard(channel)
                for inbox in inboxes:  # what was published while we were away is in the log
                    self._put(inbox, _RESYNC)

    def _deliver(self, channel: str, data: bytes) -> None:
        metrics.EVENTS_RECEIVED.inc()
        with self._lock:
            inboxes = list(self._listeners.get(channel, ()))
        if not inboxes:
            return
        try:
            message = RenderedMessage(**json.loads(data))
        except (ValueError, TypeError) as error:  # not what channel.publish sends: drop it
            log.warning("dropped a malformed message on %s: %s", channel, error)
            return
        if message.type == CLOSE:
            for inbox in inboxes:
                if isinstance(message.data, dict) and inbox.revoked_by(message.data):
                    self._put(inbox, _CLOSE)
            return
        for inbox in inboxes:
            self._put(inbox, message)
        metrics.EVENTS_DELIVERED.inc(len(inboxes))

    def _put(self, inbox: Inbox, item: object) -> None:
        try:
            inbox.put_nowait(item)
        except queue.Full:
            inbox.overflowed = True
            self.leave(inbox)
            metrics.STREAMS_OVERFLOWED.inc()
            log.warning("closed a stream of %s that stopped reading (%d events waiting)",
                        inbox.channel, inbox.maxsize)  # fmt: skip


_creation = threading.Lock()


def broadcaster() -> Broadcaster:
    """Return this process's broadcaster, started on first use (after any fork)."""
    with _creation:  # the first requests arrive together; they must share one
        current = current_app.extensions.get("microblog.broadcaster")
        if current is None or current._pid != os.getpid():
            config = current_app.config
            current = Broadcaster(subscription.opener(config), config["SSE_STREAM_QUEUE_LIMIT"])
            current_app.extensions["microblog.broadcaster"] = current
        return current


def resume_point() -> str | None:
    """Return the id the stream should resume after, from the header or the query."""
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if last_id is None:
        return None
    match = _EVENT_ID.fullmatch(last_id)
    if not match or any(int(part) >= 2**64 for part in match.groups("0")):
        abort(400, _("Last-Event-ID is not an event id."))
    return last_id


class UserStreamBlueprint(ServerSentEventsBlueprint):
    """flask-sse's blueprint, private per user, resumable, on a shared subscription."""

    @property
    def redis(self) -> redis.Redis:
        return redis_client()  # one pool per process, not a client per publish

    def messages(
        self, channel: str, last_id: str, inbox: Inbox, allowed: Callable[[], bool]
    ) -> Iterator[Message | None]:
        """Yield the logged events after ``last_id``, then live ones, and None on each idle
        beat; after a lost subscription comes back, the logged events it missed. End when
        the stream is revoked, or when ``allowed()`` says no after a lost subscription: a
        user's stream then ends with :func:`farewell`.

        ``inbox`` is a listener whose channel Redis already delivers, so that no event
        published between the replay and the live part is lost (the log has it, or the
        inbox, or both: each event is sent once, in id order).
        """
        config = current_app.config
        newest = event_key(last_id)
        next_mark = 0.0  # an operators' page marks itself watching while its stream is open
        for message in missed_since(channel, last_id):
            newest = event_key(message.id)
            yield message
        deadline = time.monotonic() + config["SSE_MAX_STREAM_SECONDS"]
        # A write to a closed client fails only on the second try (the first fills the socket
        # buffer and draws a reset), so beat twice per interval to release it within one.
        beat = config["SSE_HEARTBEAT_SECONDS"] / 2
        while (remaining := deadline - time.monotonic()) > 0 and not inbox.overflowed:
            if channel == OPERATORS and time.monotonic() >= next_mark:
                mark_operators_watching()
                next_mark = time.monotonic() + WATCHING_SECONDS / 4
            try:
                item = inbox.get(timeout=min(beat, remaining))
            except queue.Empty:
                yield None
                continue
            if item is _CLOSE or (item is _RESYNC and not allowed()):
                if channel != OPERATORS:  # the user's own: it ended with its sign-in
                    yield farewell()
                return
            missed = [item]
            if item is _RESYNC:
                missed = missed_since(channel, "{}-{}".format(*newest))
            for message in missed:
                if message.id is None or event_key(message.id) > newest:
                    newest = event_key(message.id) if message.id else newest
                    yield message

    def stream(self):
        if not current_user.is_authenticated:
            if g.get("sign_in_ended"):  # revoked while the stream was away: say why, once
                return self.event_stream(iter([f"retry: {RETRY_MS}\n\n", str(farewell())]))
            abort(401)
        return self.open_stream(channel_for(current_user.id))  # never from the request

    def event_stream(self, events: Iterator[str]) -> Response:
        """Answer with ``events`` (their wire format) as a stream no cache or proxy holds."""
        response = current_app.response_class(events, mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        return response

    def open_stream(self, channel: str, role: Callable[[User], bool] = lambda user: True):
        """Answer the signed-in user with ``channel``'s events while their sign-in stands and
        ``role(user)`` holds; the caller has checked both for this request."""
        last_id = resume_point()
        user_id, sign_in = current_user.id, token_hash(current_user.sign_in_token)

        def allowed() -> bool:
            try:
                user = load_user(current_user.sign_in_token)
                return user is not None and role(user)
            except SQLAlchemyError as error:  # unknown is no: the browser's retry asks again
                log.warning("stream for %s ended, its sign-in could not be checked: %s",
                            channel, error)  # fmt: skip
                return False
            finally:
                db.session.close()  # a stream holds no database connection between checks

        # A stream may stay open for minutes and needs no database: hand the connection back
        # to the pool now, or a few dozen open streams would exhaust it.
        db.session.close()
        hub = broadcaster()
        # The resume point first, then listen, and have Redis confirm the channel before the
        # first byte goes out: whatever is published after the resume point reaches the
        # client, from the log (until the channel is confirmed) or live (after).
        try:
            if last_id is None:
                last_id = latest_id(channel)  # only what comes from now on
            inbox = hub.listen(channel, user_id, sign_in)
            subscribed = hub.wait_subscribed(inbox, timeout=2)
        except redis.RedisError:
            inbox, subscribed = None, False
        # Revoked while it was starting: end at once, like a stream without Redis; the
        # browser's retry then meets the revocation (a 401) as any request would.
        subscribed = subscribed and allowed()
        if inbox is not None and not subscribed:
            hub.leave(inbox)

        @stream_with_context
        def generate() -> Iterator[str]:
            yield f"retry: {RETRY_MS}\n\n"
            if not subscribed:
                return  # Redis is unreachable or the sign-in is gone: the browser retries
            try:
                for message in self.messages(channel, last_id, inbox, allowed):
                    yield ": heartbeat\n\n" if message is None else for_reader(message)
            except redis.RedisError as error:
                log.warning("stream for %s ended: %s", channel, error)

        response = self.event_stream(generate())
        if subscribed:
            response.call_on_close(lambda: hub.leave(inbox))
        return response


SIGN_IN_ENDED_EVENT = "session.ended"  # a stream's last event when its sign-in ended


def farewell() -> Message:
    """The last event of a stream whose sign-in ended: what the page should say (in the
    reader's language) and where to sign in again."""
    data = {
        "message": str(SIGN_IN_ENDED),
        "sign_in": _("Sign in"),
        "sign_in_url": url_for("auth.login"),
    }
    return Message(data, type=SIGN_IN_ENDED_EVENT)


sse = UserStreamBlueprint("events", __name__)
sse.add_url_rule("/stream", endpoint="stream", view_func=sse.stream)


def stream_url(channel: str | None = None, endpoint: str = "events.stream") -> str | None:
    """Return this page's stream URL with its resume point, or None if Redis is down.

    By default the signed-in user's stream; the admin page passes the operators' channel.
    """
    try:
        if channel == OPERATORS:  # copies from now on, before the resume point is read
            mark_operators_watching()
        last_id = latest_id(channel or channel_for(current_user.id))
    except redis.RedisError:
        return None
    return url_for(endpoint, last_event_id=last_id)


def page_stream_url() -> str | None:
    """Return the signed-in user's stream URL for the page being rendered, resuming after the
    last event published so far; None for anonymous visitors, or with Redis down.

    Read once per request, by whoever asks first: anything a page renders from SQL state (task
    cards, the unread count) must call this *before* reading that state, so that every event
    after the resume point is replayed to the page and everything before it is in the HTML.
    """
    if not has_request_context() or not current_user.is_authenticated:  # e.g. emails
        return None
    if "microblog_stream_url" not in g:
        g.microblog_stream_url = stream_url()
    return g.microblog_stream_url


def inject_stream_url() -> dict:
    """Give every page its stream URL (``base.html`` puts it on ``<body>`` for live.js)."""
    return {"stream_url": page_stream_url(), "stream_events": event_types()}


def _hub(app: Flask | None = None) -> Broadcaster | None:
    hub = (app or current_app).extensions.get("microblog.broadcaster")
    return hub if hub is not None and hub._pid == os.getpid() else None


def open_streams(app: Flask | None = None) -> int:
    """Return how many streams this process is serving (for ``app``, by default the current
    one)."""
    hub = _hub(app)
    return hub.listener_count if hub is not None else 0


def subscription_state() -> str:
    """Say whether this process receives events: "idle" before its first stream, else
    "ok", "reconnecting" or "stopped"."""
    hub = _hub()
    return hub.state() if hub is not None else "idle"


def init_app(app: Flask) -> None:
    app.register_blueprint(sse)
    app.context_processor(inject_stream_url)


def close_streams(channels: list[str], user_id: int, sign_ins: list[str] | None = None) -> None:
    """End the streams of ``user_id`` on ``channels`` in every process: those opened with one
    of ``sign_ins`` (token hashes), or all of them; call after the revocation is committed."""
    message = json.dumps({"type": CLOSE, "data": {"user_id": user_id, "sign_ins": sign_ins}})
    try:
        client = redis_client()
        publish = client.spublish if events_on_cluster(current_app.config) else client.publish
        prefix = channel_prefix(current_app.config)
        for channel in channels:
            publish(prefix + channel, message)
    except redis.RedisError as error:  # its streams hear nothing either; they check on return
        log.warning("could not close the streams of user %s: %s", user_id, error)


@sign_ins_closed.connect
def _close_streams_of_sign_ins(sender: object, user_id: int, sign_ins: list[str] | None) -> None:
    close_streams([channel_for(user_id), OPERATORS], user_id, sign_ins)


@admin_revoked.connect
def _close_operator_streams(sender: object, user_id: int) -> None:
    close_streams([OPERATORS], user_id)  # the operators' page open in their browser
