"""A web process's subscription to the events' Redis: one connection, or one per cluster shard.

The broadcaster (:mod:`microblog.live.stream`) reads every event its streams want through one
:class:`Subscription`. On a single Redis (or the master the sentinels name) that is one pub/sub
connection. On a Redis Cluster, events are published with sharded pub/sub (``SPUBLISH``), which
a node delivers only to its own subscribers, so :class:`ShardedSubscription` keeps one
connection per shard that holds any of the wanted channels and subscribes each channel
(``SSUBSCRIBE``) on the node that owns its slot.

Both give the broadcaster the same messages (``message``, ``subscribe``, ``unsubscribe``) and
fail the same way: any lost connection, and on a cluster a slot that moved or a master replaced
by its replica, raises :class:`redis.ConnectionError`; the broadcaster then opens a new
subscription (reading the cluster's slots afresh) and has every stream read what it missed
from the event log.
"""

import select
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.client import PubSub
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url

from microblog.redis_clients import (
    EventsCluster,
    channel_prefix,
    events_on_cluster,
    events_subscriber,
    events_url,
)

# Timeouts of a subscription's connections: reads wait in get_message, these bound a connect
# or a ping to a dead host.
OPTIONS = {"socket_keepalive": True, "socket_connect_timeout": 5, "socket_timeout": 60}


class Subscription:
    """One pub/sub connection to a single Redis, whose channels carry ``prefix`` there (see
    :func:`microblog.redis_clients.channel_prefix`); its messages name them without it."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self.prefix = prefix

    @classmethod
    def opener(
        cls, connect: Callable[..., redis.Redis], prefix: str = ""
    ) -> Callable[[], "Subscription"]:
        """Return what opens a subscription with a client ``connect(**OPTIONS)`` makes."""
        return lambda: cls(connect(**OPTIONS), prefix)

    def check(self) -> None:
        """Fail here, not on the first subscription, if Redis is away."""
        self.client.ping()

    @property
    def subscribed(self) -> bool:
        return self.pubsub.subscribed

    def subscribe(self, channels: Iterable[str]) -> None:
        self.pubsub.subscribe(*[self.prefix + channel for channel in channels])

    def unsubscribe(self, channels: Iterable[str]) -> None:
        self.pubsub.unsubscribe(*[self.prefix + channel for channel in channels])

    def get_message(self, timeout: float) -> dict | None:
        raw = self.pubsub.get_message(timeout=timeout)
        if raw is None or not self.prefix or raw.get("channel") is None:
            return raw
        channel = raw["channel"]  # bytes, or str with decode_responses
        channel = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
        return {**raw, "channel": channel.removeprefix(self.prefix)}

    def ping(self) -> None:
        self.pubsub.ping()

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


class ShardedSubscription:
    """Sharded pub/sub on a Redis Cluster: one connection per shard that holds a wanted
    channel, each channel subscribed on the node that owns its slot."""

    KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._shards: dict[str, PubSub] = {}  # by node name ("host:port")
        self._leaving: set[str] = set()  # unsubscribed by us, not yet confirmed

    @classmethod
    def opener(cls, url: str) -> Callable[[], "ShardedSubscription"]:
        """Return what opens a subscription on the cluster ``url``'s node belongs to: through
        any node seen so far, so that losing that one node does not lose the way in."""
        address = parse_url(url)
        known = [ClusterNode(address.get("host", "127.0.0.1"), address.get("port", 6379))]

        def open_subscription() -> ShardedSubscription:
            cluster = EventsCluster(startup_nodes=known, **OPTIONS)
            known[:] = [ClusterNode(node.host, node.port) for node in cluster.get_nodes()]
            return cls(cluster)

        return open_subscription

    def check(self) -> None:
        self.cluster.ping(target_nodes=RedisCluster.PRIMARIES)

    @property
    def subscribed(self) -> bool:
        return any(pubsub.subscribed for pubsub in self._shards.values())

    def _shard(self, channel: str) -> PubSub:
        node = self.cluster.get_node_from_key(channel)
        pubsub = self._shards.get(node.name)
        if pubsub is None:
            pubsub = self._shards[node.name] = node.redis_connection.pubsub()
        return pubsub

    def subscribe(self, channels: Iterable[str]) -> None:
        by_slot: dict[int, list[str]] = {}  # one SSUBSCRIBE may name channels of one slot only
        for channel in channels:
            by_slot.setdefault(self.cluster.keyslot(channel), []).append(channel)
            self._leaving.discard(channel)
        for wanted in by_slot.values():
            self._shard(wanted[0]).ssubscribe(*wanted)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._leaving.add(channel)
            self._shard(channel).sunsubscribe(channel)

    def get_message(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            for pubsub in list(self._shards.values()):
                if pubsub.subscribed and pubsub.connection.can_read(timeout=0):
                    return self._read(pubsub)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sockets = [p.connection._sock for p in self._shards.values()
                       if p.subscribed and p.connection._sock is not None]  # fmt: skip
            if not sockets:
                time.sleep(remaining)
                return None
            select.select(sockets, [], [], remaining)

    def _read(self, pubsub: PubSub) -> dict | None:
        raw = pubsub.get_message(timeout=0)
        if raw is None:
            return None
        kind = raw["type"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        channel = raw["channel"]
        channel = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
        if kind == "sunsubscribe" and channel not in self._leaving:
            # The node let go of a channel we did not leave: its slot moved to another node.
            raise redis.ConnectionError(f"the slot of {channel} moved; subscribing afresh")
        self._leaving.discard(channel)
        return {**raw, "type": self.KINDS.get(kind, kind), "channel": channel}

    def ping(self) -> None:
        for pubsub in self._shards.values():
            if pubsub.subscribed:
                pubsub.ping()

    def close(self) -> None:
        for pubsub in self._shards.values():
            pubsub.close()
        self._shards.clear()
        self.cluster.close()


def opener(config: dict[str, Any]) -> Callable[[], Subscription | ShardedSubscription]:
    """Return what opens this app's subscription to the events' Redis."""
    if events_on_cluster(config):
        return ShardedSubscription.opener(events_url(config))
    return Subscription.opener(lambda **options: events_subscriber(config, **options),
                               channel_prefix(config))  # fmt: skip
