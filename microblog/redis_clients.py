"""The two Redis roles and how each is reached: the broker's and the live events'.

The broker's Redis (``REDIS_URL``) carries the job queues, the throttles and the marks that
keep errand emails and error alerts from repeating. The events' Redis (``EVENTS_REDIS_URL``,
by default the broker's) carries what only the live channel uses: pub/sub and each channel's
event log.

Either can follow a failover through Redis Sentinel: with ``REDIS_SENTINELS`` (``host:port``
list) and ``REDIS_SENTINEL_MASTER`` the broker asks the sentinels for the master's address,
and asks again when a connection to it fails; the events do the same unless they have a URL
of their own. ``REDIS_URL`` then gives only the database number and the password. With
``EVENTS_REDIS_CLUSTER`` the events live on a Redis Cluster, ``EVENTS_REDIS_URL`` naming any
one of its nodes (see :mod:`microblog.live.channel` for how they use it).
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.exceptions import RedisClusterException, SlotNotCoveredError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_TIMEOUT = 2  # seconds for a sentinel to answer who the master is


def sentinel_options() -> dict[str, Any]:
    """Return how to ask a sentinel who the master is: briefly, and once, since the next
    sentinel is the retry (redis-py's default retries made one silent sentinel cost every
    new connection seconds before the others were asked)."""
    return {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
            "retry": Retry(NoBackoff(), 0)}  # fmt: skip


class SentinelBlockingConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A pool of connections to the master the sentinels name that, when every connection is
    in use, waits for one (up to ``timeout``) instead of opening more."""


class EventsCluster(RedisCluster):
    """redis-py's cluster client, which says that the cluster is away as a single Redis does.

    When no node answers, or some slots have no master, redis-py raises
    ``RedisClusterException``, which is no ``redis.RedisError``: every caller that waits a
    Redis outage out (a job's progress, a page's stream link, the health check) would take it
    for a bug. This client raises ``redis.ConnectionError`` for those; a command the cluster
    cannot run (e.g. keys in different slots) stays a ``RedisClusterException``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _cluster_away_as_connection_error():  # a new client reads the slots at once
            super().__init__(*args, **kwargs)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _cluster_away_as_connection_error():  # a failed command reads the slots again
            return super().execute_command(*args, **kwargs)

    def get_node_from_key(self, key: str, replica: bool = False) -> Any:
        with _cluster_away_as_connection_error():
            return super().get_node_from_key(key, replica)


@contextmanager
def _cluster_away_as_connection_error() -> Iterator[None]:
    try:
        yield
    except RedisClusterException as error:
        unreachable = isinstance(error.__cause__, redis.RedisError)  # no node answered
        uncovered = isinstance(error, SlotNotCoveredError) or "not covered" in str(error)
        if unreachable or uncovered:
            raise redis.ConnectionError(f"the Redis Cluster is away: {error}") from error
        raise


def sentinel_addresses(config: dict[str, Any]) -> list[tuple[str, int]]:
    """Return the sentinels' addresses, or an empty list when Sentinel is not used."""
    addresses = []
    for item in config.get("REDIS_SENTINELS") or []:
        host, _, port = item.strip().rpartition(":")
        addresses.append((host.strip("[]") or "127.0.0.1", int(port)))
    return addresses


def events_url(config: dict[str, Any]) -> str:
    return config.get("EVENTS_REDIS_URL") or config["REDIS_URL"]


def events_on_cluster(config: dict[str, Any]) -> bool:
    return bool(config.get("EVENTS_REDIS_CLUSTER"))


def channel_prefix(config: dict[str, Any]) -> str:
    """Return what the events' pub/sub channels are prefixed with in Redis.

    Pub/sub ignores the database number: two sites on two databases of one Redis server would
    hear each other's events (user 5 of one seeing user 5 of the other's). Channels on a
    database other than 0 therefore carry its number (``db3:user.5``); on database 0 and on a
    cluster (which has only that one) they keep their plain names.
    """
    return "" if events_on_cluster(config) else _database_prefix(events_url(config))


@functools.cache  # asked for every event published: parse each URL once
def _database_prefix(url: str) -> str:
    database = int(parse_url(url).get("db") or 0)
    return f"db{database}:" if database else ""


def master_settings(url: str) -> dict[str, Any]:
    """Return what ``url`` says of the master the sentinels name: its database and credentials
    (the sentinels themselves are asked without them)."""
    settings = parse_url(url)
    return {key: settings[key] for key in ("db", "username", "password") if key in settings}


def _through_sentinel(config: dict[str, Any], url: str, **options: Any) -> redis.Redis:
    """A client of the master the sentinels name, with ``url``'s database and password."""
    sentinel = Sentinel(sentinel_addresses(config), sentinel_kwargs=sentinel_options())
    return sentinel.master_for(config["REDIS_SENTINEL_MASTER"], **master_settings(url), **options)


def broker_client(config: dict[str, Any], **options: Any) -> redis.Redis:
    """Return a client of the broker's Redis (``options``: timeouts and the like)."""
    if sentinel_addresses(config):
        return _through_sentinel(config, config["REDIS_URL"], **options)
    return redis.Redis.from_url(config["REDIS_URL"], **options)


def events_client(config: dict[str, Any], **options: Any) -> redis.Redis | RedisCluster:
    """Return a client of the events' Redis: a cluster client on a Redis Cluster, else one
    whose ``max_connections`` connections are shared by every caller, who wait their turn
    (up to ``timeout``) when all are in use."""
    if events_on_cluster(config):  # the same kind of pool to each node
        return EventsCluster.from_url(events_url(config),
                                     connection_pool_class=redis.BlockingConnectionPool,
                                     **options)  # fmt: skip
    if sentinel_addresses(config) and not config.get("EVENTS_REDIS_URL"):
        return _through_sentinel(config, config["REDIS_URL"],
                                 connection_pool_class=SentinelBlockingConnectionPool,
                                 **options)  # fmt: skip
    pool = redis.BlockingConnectionPool.from_url(events_url(config), **options)
    return redis.Redis(connection_pool=pool)


def events_subscriber(config: dict[str, Any], **options: Any) -> redis.Redis:
    """Return a client for one process's event subscription (one connection of its own) to a
    single Redis; on a Redis Cluster, see :func:`events_client`."""
    if sentinel_addresses(config) and not config.get("EVENTS_REDIS_URL"):
        return _through_sentinel(config, config["REDIS_URL"], **options)
    return redis.Redis.from_url(events_url(config), **options)
