"""Publishing on the live channel: one private channel per user, ids that increase, a log.

Each event is appended to a capped Redis Stream ``events:{user.<id>}`` and published on the
pub/sub channel ``user.<id>`` in one Lua script, so the log order, the publish order and the
event ids (the stream's entry ids) always agree. Messages keep flask-sse's wire format:
``{"type": …, "data": …, "id": …}``. What a type means and which fields its data holds is
the publisher's contract (see ``docs/events.md``); this module carries any JSON object.

The log's hash tag is its channel's name, so on a Redis Cluster a channel and its log map to
the same slot (a name without braces is hashed whole): the script touches one node, and
publishes there with sharded pub/sub (``SPUBLISH``), to the subscribers that node has.

While an operators' page is open, a copy of every event, with its ``user_id``, goes the same
way on the operators' channel ``operators`` (its own log, its own ids), which only that page
listens to. The page marks itself watching (:func:`mark_operators_watching`) when it is
rendered and every quarter minute while its stream is open; without the mark no copy is made
(each process reads it at most once a second), so that one
channel (on a cluster, one shard) does not carry every event of the site for nobody. It is a
second script call rather than part of the first, so that each script touches one channel's
keys: on a Redis Cluster those may live on different nodes.
"""

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, current_app
from flask_sse import Message
from redis.cluster import RedisCluster

from microblog import metrics
from microblog.redis_clients import channel_prefix, events_client, events_on_cluster

log = logging.getLogger(__name__)

OPERATORS = "operators"  # every user's events, for the admin page
OPERATORS_WATCHING = "operators:watching"  # set while an operators' page is open
WATCHING_SECONDS = 60  # the mark's life: several of the page's heartbeats
LOG_LENGTH = 200  # events kept per channel for resuming streams
LOG_TTL_SECONDS = 24 * 3600
POOL_SIZE = 20  # Redis connections per process for events, however many streams ask at once

# KEYS: log stream, pub/sub channel. ARGV: type, JSON data, max log length, ttl.
_APPEND_AND_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
                      'type', ARGV[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local message = '{"data": ' .. ARGV[2] .. ', "type": ' .. cjson.encode(ARGV[1]) ..
    ', "id": ' .. cjson.encode(id) .. '}'
redis.call('PUBLISH', KEYS[2], message)
return id
"""
# The same on a Redis Cluster: sharded pub/sub, on the node that holds the log's slot.
_APPEND_AND_SPUBLISH = _APPEND_AND_PUBLISH.replace("'PUBLISH'", "'SPUBLISH'")


_event_types: list[str] = []  # every type a publisher declared, in order
# Per type: turns an event's data, as published, into what a reader of the current language
# sees (its texts are kept as message ids: see microblog.i18n).
_localizers: dict[str, Callable[[Any], Any]] = {}


def declare_event_types(
    *types: str, localize: Callable[[Any], Any] | None = None
) -> tuple[str, ...]:
    """Record the event types a publisher sends on users' channels (the pages' stream listens
    for exactly these) and, if its events hold texts to translate, how to ``localize`` one's
    data for the reader (the stream applies it in the language of the stream's request);
    return them."""
    _event_types.extend(t for t in types if t not in _event_types)
    if localize is not None:
        _localizers.update(dict.fromkeys(types, localize))
    return types


def localizer(type: str) -> Callable[[Any], Any] | None:
    """Return how to localize the data of an event of ``type``, if it has texts to translate."""
    return _localizers.get(type)


def event_types() -> list[str]:
    """Return every event type declared for users' channels."""
    return list(_event_types)


def channel_for(user_id: int) -> str:
    """Return the private channel of a user; clients never choose it."""
    return f"user.{user_id}"


def log_key(channel: str) -> str:
    """Return the key of ``channel``'s event log, in the same Redis Cluster slot."""
    return f"events:{{{channel}}}"


def redis_client() -> redis.Redis | RedisCluster:
    """Return the app's shared client of the events' Redis: one pool of at most
    ``POOL_SIZE`` connections per process (per node, on a cluster). A thousand streams
    opening at once (each reads the log) wait their turn for a connection instead of
    opening a thousand."""
    client = current_app.extensions.get("microblog.redis")
    if client is not None:
        return client
    with _creation:  # the first streams arrive together and must share one: a cluster's
        # client reads the cluster's slots when it is made, and other requests run meanwhile
        client = current_app.extensions.get("microblog.redis")
        if client is None:
            client = current_app.extensions["microblog.redis"] = events_client(
                current_app.config,
                max_connections=POOL_SIZE,
                timeout=5,  # longest wait for a free connection
                socket_timeout=5,
                socket_connect_timeout=2,  # a page must not hang on an unreachable Redis
                health_check_interval=30,
            )
        return client


_creation = threading.Lock()


def publish(user_id: int, type: str, data: dict[str, Any]) -> str:
    """Log and publish one event on the user's channel, and a copy for operators if their page
    is open; return the user's event id.

    :raise redis.RedisError: Redis is away; see :func:`announce` for callers that must not
        fail with it.
    """
    event_id = _append_and_publish(channel_for(user_id), type, data)
    metrics.EVENTS_PUBLISHED.labels(type).inc()
    if operators_watching():
        _append_and_publish(OPERATORS, type, data | {"user_id": user_id})
    return event_id


# This process's knowledge of the mark: read from Redis at most once per WATCHING_CHECK
# seconds (the mark's key sits on one node of a cluster, which every publish would otherwise
# ask), known at once when this process set it.
WATCHING_CHECK = 1.0


def _watching() -> dict[str, float]:
    return current_app.extensions.setdefault(
        "microblog.operators_watching", {"checked_at": -WATCHING_CHECK, "until": 0.0}
    )


def operators_watching() -> bool:
    """Say whether an operators' page is open, as this process last learnt."""
    now, known = time.monotonic(), _watching()
    if now >= known["until"] and now - known["checked_at"] >= WATCHING_CHECK:
        ttl = redis_client().pttl(OPERATORS_WATCHING)
        known.update(checked_at=now, until=now + ttl / 1000 if ttl > 0 else 0.0)
    return now < known["until"]


def mark_operators_watching() -> None:
    """Say that an operators' page is open: events are copied to it for ``WATCHING_SECONDS``
    (by other processes from their next look at the mark, at most a second later).

    :raise redis.RedisError: Redis is away (the page's stream cannot open either).
    """
    redis_client().set(OPERATORS_WATCHING, 1, ex=WATCHING_SECONDS)
    _watching()["until"] = time.monotonic() + WATCHING_SECONDS


def announce(user_id: int, type: str, data: dict[str, Any], keep_trying: float = 0) -> None:
    """Publish an event for its live view only: a Redis outage is logged, never raised (the
    truth is in SQL, which the next page load reads).

    :param keep_trying: seconds to go on trying in the background when Redis is away, for an
        event that no later one replaces (a task's end): a failover takes a few seconds, and
        the open pages should not wait for a reload to learn it.
    """
    try:
        publish(user_id, type, data)
    except redis.RedisError as error:
        log.warning("could not publish %s for user %s: %s", type, user_id, error)
        if keep_trying > 0:
            app = current_app._get_current_object()
            deadline = time.monotonic() + keep_trying
            threading.Thread(target=_publish_later, args=(app, deadline, user_id, type, data),
                             name="publish-later", daemon=True).start()  # fmt: skip


def _publish_later(app: Flask, deadline: float, user_id: int, type: str, data: dict) -> None:
    """Try to publish an event again about every second until Redis takes it or ``deadline``."""
    delay = 0.5
    while time.monotonic() < deadline:
        time.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 4)
        with app.app_context():
            try:
                publish(user_id, type, data)
            except redis.RedisError:
                continue
        log.info("published %s for user %s once Redis was back", type, user_id)
        return
    log.warning("gave up publishing %s for user %s: Redis stayed away", type, user_id)


def _append_and_publish(channel: str, type: str, data: dict[str, Any]) -> str:
    sharded = events_on_cluster(current_app.config)
    script = redis_client().register_script(
        _APPEND_AND_SPUBLISH if sharded else _APPEND_AND_PUBLISH
    )
    event_id = script(
        keys=[log_key(channel), channel_prefix(current_app.config) + channel],
        args=[type, json.dumps(data), LOG_LENGTH, LOG_TTL_SECONDS],
    )
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def latest_id(channel: str) -> str:
    """Return the id of the newest logged event of ``channel``, or "0" if there is none."""
    entries = redis_client().xrevrange(log_key(channel), count=1)
    return entries[0][0].decode() if entries else "0"


def missed_since(channel: str, last_id: str) -> list[Message]:
    """Return the logged events of ``channel`` after ``last_id``, oldest first."""
    entries = redis_client().xrange(log_key(channel), min=f"({last_id}", max="+")
    return [
        Message(json.loads(fields[b"data"]), type=fields[b"type"].decode(), id=entry_id.decode())
        for entry_id, fields in entries
    ]
