"""The event stream, served by the real gunicorn (gevent workers) and read as a browser would."""

import threading

import pytest
import redis
import requests
from redis.cluster import RedisCluster

from devkit.services import wait_until
from microblog.jobs import events
from microblog.live import channel as live
from microblog.redis_clients import channel_prefix
from tests.support.data import SSEReader
from tests.support.servers import on_every_events_topology
from tests.support.web import live_session

# Each stream test runs with the events on the session's Redis and on a Redis Cluster, where
# they travel by sharded pub/sub: the same streams, resumes and releases hold on both.
pytestmark = on_every_events_topology


@pytest.fixture
def events_store(live_app):
    """A client of the Redis (or Redis Cluster) where the events are."""
    with live_app.app_context():
        return live.redis_client()


def event_nodes(live_app) -> list[redis.Redis]:
    """Return a client of each Redis server that holds events (each master, on a cluster)."""
    with live_app.app_context():
        client = live.redis_client()
    if isinstance(client, RedisCluster):
        return [node.redis_connection for node in client.get_primaries()]
    return [client]


def connected_clients(live_app) -> int:
    return sum(node.info("clients")["connected_clients"] for node in event_nodes(live_app))


def subscribers(live_app, channel: str) -> int:
    """Return how many subscriptions the events' Redis has for ``channel`` (sharded on a
    cluster: those of the node that owns its slot)."""
    with live_app.app_context():
        client = live.redis_client()
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(channel).redis_connection
        return node.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]
    return client.pubsub_numsub(channel_prefix(live_app.config) + channel)[0][1]


@pytest.fixture
def publish(live_app):
    """Publish an event on a user's channel through the app's real publishing path."""

    def send(user_id: int, n: int, type: str = events.PROGRESS) -> str:
        with live_app.app_context():
            return live.publish(user_id, type, {"task_id": "t", "n": n, "progress": n})

    return send


@pytest.fixture
def open_stream(gunicorn_server):
    """Open ``/stream`` for a signed-in session; every stream is closed after the test."""
    readers: list[SSEReader] = []

    def open_(session: requests.Session, last_event_id: str | None = None, **params) -> SSEReader:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        response = session.get(
            gunicorn_server + "/stream", params=params, headers=headers, stream=True, timeout=30
        )
        assert response.status_code == 200, response.text
        reader = SSEReader(response)
        readers.append(reader)
        reader.wait_for(lambda r: r.retry is not None, 30, "the retry hint")
        return reader

    def close_all() -> None:
        while readers:
            readers.pop().close()

    open_.close_all = close_all
    yield open_
    close_all()


def open_streams(gunicorn_server) -> int:
    return requests.get(gunicorn_server + "/healthz", timeout=5).json()["streams"]


def test_anonymous_visitors_get_401_and_no_stream(gunicorn_server):
    response = requests.get(gunicorn_server + "/stream", timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("text/html")


def test_stream_headers_and_retry_hint(gunicorn_server, live_user, open_stream):
    _, name = live_user("alice")
    reader = open_stream(live_session(gunicorn_server, name))
    headers = reader.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert reader.retry == 3000


def test_a_user_sees_only_their_own_events_whatever_channel_they_ask_for(
    gunicorn_server, live_user, open_stream, publish
):
    alice_id, alice = live_user("alice")
    bob_id, _ = live_user("bob")
    reader = open_stream(live_session(gunicorn_server, alice), channel=f"user.{bob_id}")
    publish(bob_id, 1)
    publish(alice_id, 2)
    publish(bob_id, 3)
    publish(alice_id, 4)
    reader.wait_for_events(2)
    assert [e["data"]["n"] for e in reader.events] == [2, 4]


def test_last_event_id_replays_missed_events_then_continues_live_without_gaps_or_duplicates(
    gunicorn_server, live_user, open_stream, publish, events_store
):
    # Given events the client saw, then events it missed
    user_id, name = live_user("alice")
    seen = publish(user_id, 0)
    for n in range(1, 50):
        publish(user_id, n)

    # When it reconnects with Last-Event-ID while more events are being published
    publisher = threading.Thread(target=lambda: [publish(user_id, n) for n in range(50, 150)])
    publisher.start()
    reader = open_stream(live_session(gunicorn_server, name), last_event_id=seen)
    publisher.join()

    # Then it gets every event after the one it saw, once each, in order
    received = reader.wait_for_events(149)
    logged = events_store.xrange(live.log_key(live.channel_for(user_id)))
    assert [e["id"] for e in received] == [entry_id.decode() for entry_id, _ in logged[1:]]
    assert [e["data"]["n"] for e in received] == list(range(1, 150))


def test_resume_point_in_the_query_works_like_the_header(
    gunicorn_server, live_user, open_stream, publish
):
    user_id, name = live_user("alice")
    first = publish(user_id, 1)
    publish(user_id, 2)
    session = live_session(gunicorn_server, name)
    response = session.get(
        gunicorn_server + "/stream", params={"last_event_id": first}, stream=True, timeout=30
    )
    reader = SSEReader(response)
    try:
        assert [e["data"]["n"] for e in reader.wait_for_events(1)] == [2]
    finally:
        reader.close()


@pytest.mark.parametrize(
    "last_id", ["1-0) OR 1", "18446744073709551616", "1-18446744073709551616", "١٢٣", "1\n"]
)
def test_a_last_event_id_redis_could_not_take_is_a_400(gunicorn_server, live_user, last_id):
    # Each would otherwise open a stream that Redis ends at once, and the browser would
    # reconnect every few seconds forever.
    _, name = live_user("alice")
    session = live_session(gunicorn_server, name)
    response = session.get(
        gunicorn_server + "/stream", params={"last_event_id": last_id}, timeout=5
    )
    assert response.status_code == 400
    header = session.get(gunicorn_server + "/stream", headers={"Last-Event-ID": "1-0) OR 1"},
                         timeout=5)  # fmt: skip
    assert header.status_code == 400


def test_an_idle_stream_gets_heartbeats(gunicorn_server, live_user, open_stream):
    _, name = live_user("alice")
    reader = open_stream(live_session(gunicorn_server, name))
    reader.wait_for(lambda r: "heartbeat" in r.comments, 30, "a heartbeat comment")


def test_streams_share_one_redis_connection_and_closed_ones_are_released(
    gunicorn_server, live_user, open_stream, live_app
):
    # Given one stream open, so the process's shared subscription exists
    user_id, name = live_user("alice")
    session = live_session(gunicorn_server, name)
    open_stream(session)
    # (the server is shared: streams other tests closed may still be on their way out)
    wait_until(lambda: open_streams(gunicorn_server) == 1, 30, "other tests' streams to go")
    baseline = 1
    connections_before = connected_clients(live_app)

    # When twenty more streams open
    readers = [open_stream(session) for _ in range(20)]
    assert open_streams(gunicorn_server) == baseline + 20

    # Then Redis sees no new connection for them
    assert connected_clients(live_app) <= connections_before + 1
    # (one subscriber, on this user's channel only, and no pattern)
    channel = f"user.{user_id}"
    assert subscribers(live_app, channel) == 1
    assert all(node.execute_command("PUBSUB", "NUMPAT") == 0 for node in event_nodes(live_app))

    # And when they close, the server lets go of them within about a heartbeat (1 s here)
    for reader in readers:
        reader.close()
    wait_until(
        lambda: open_streams(gunicorn_server) <= baseline, 30, "closed streams to be released"
    )
    # And the last one closing unsubscribes the channel
    open_stream.close_all()
    wait_until(lambda: subscribers(live_app, channel) == 0, 30,
               "the channel to be unsubscribed after its last stream")  # fmt: skip


def test_streams_opening_while_their_users_events_pour_in_miss_nothing(
    gunicorn_server, live_user, open_stream, publish, events_store
):
    # Given five users who each saw a first event
    users = [live_user(f"busy{i}") for i in range(5)]
    seen = {user_id: publish(user_id, 0) for user_id, _ in users}
    # When each opens a stream (its channel's first) while events pour in for all of them
    publisher = threading.Thread(
        target=lambda: [publish(user_id, n) for n in range(1, 60) for user_id, _ in users]
    )
    publisher.start()
    readers = {
        user_id: open_stream(live_session(gunicorn_server, name), last_event_id=seen[user_id])
        for user_id, name in users
    }
    publisher.join()
    # Then each stream gets every event after the one seen, once, in order: the log's ids
    log = events_store
    for user_id, reader in readers.items():
        received = reader.wait_for_events(59)
        logged = [
            entry_id.decode() for entry_id, _ in log.xrange(live.log_key(live.channel_for(user_id)))
        ]
        assert [e["id"] for e in received] == logged[1:]
