"""Streams end cleanly when Redis goes away or their lifetime is up, and resume after."""

import time

import pytest
import redis

from devkit.services import RedisServer, wait_until
from microblog import create_app
from microblog.jobs import events
from microblog.live import channel as live
from tests.support.data import SSEReader
from tests.support.servers import Gunicorn
from tests.support.web import live_session


@pytest.fixture
def own_redis():
    """A Redis server of this test's own, which the test may stop and start again."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(live_env, own_redis, tmp_path):
    env = {**live_env, "REDIS_URL": own_redis.url, "SSE_HEARTBEAT_SECONDS": "1",
           "SSE_MAX_STREAM_SECONDS": "4"}  # fmt: skip
    gunicorn = Gunicorn(env, tmp_path / "gunicorn.log")
    yield gunicorn.url
    gunicorn.stop()


def connect(base_url, session, last_event_id=None) -> SSEReader:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    response = session.get(base_url + "/stream", headers=headers, stream=True, timeout=30)
    assert response.status_code == 200
    return SSEReader(response)


@pytest.fixture
def long_server(live_env, own_redis, tmp_path):
    env = {**live_env, "REDIS_URL": own_redis.url, "SSE_HEARTBEAT_SECONDS": "1"}
    gunicorn = Gunicorn(env, tmp_path / "gunicorn.log")
    yield gunicorn.url
    gunicorn.stop()


def test_a_stream_stays_open_across_a_redis_restart_and_misses_nothing(
    long_server, own_redis, live_database, live_user
):
    user_id, name = live_user("alice")
    session = live_session(long_server, name)
    publisher = create_app({"SQLALCHEMY_DATABASE_URI": live_database, "REDIS_URL": own_redis.url})

    def publish(n: int) -> bool:
        try:
            with publisher.app_context():
                live.publish(user_id, events.PROGRESS, {"task_id": "t", "progress": n})
            return True
        except redis.RedisError:
            return False

    reader = connect(long_server, session)
    try:
        reader.wait_for(lambda r: r.retry is not None, 30, "the stream to open")
        assert publish(1)
        reader.wait_for_events(1)
        # When Redis stops, pages still render and the stream goes on beating
        own_redis.stop()
        assert session.get(long_server + "/", timeout=5).status_code == 200
        beats = len(reader.comments)
        reader.wait_for(lambda r: len(r.comments) >= beats + 2, 30, "heartbeats without Redis")
        # When it is back on the same address, what is published reaches the same stream,
        # whether it comes before the process has subscribed again (from the log) or after
        own_redis.start()
        wait_until(lambda: publish(2), 30, "Redis to take events again")
        assert publish(3)
        received = reader.wait_for_events(3, timeout=15)
        assert not reader.ended.is_set(), "the stream ended: the browser would have reconnected"
    finally:
        reader.close()
    assert [e["data"]["progress"] for e in received] == [1, 2, 3]
    ids = [tuple(map(int, e["id"].split("-"))) for e in received]
    assert ids == sorted(set(ids))


def test_a_stream_ends_after_its_lifetime_and_not_before(server, live_user):
    # Given a stream whose lifetime is 4 s (SSE_MAX_STREAM_SECONDS), with 1 s heartbeats
    _, name = live_user("alice")
    opened = time.monotonic()
    reader = connect(server, live_session(server, name))

    # When nothing is published, the server still ends it, after its lifetime
    reader.wait_for_end(15)
    lived = time.monotonic() - opened
    reader.close()

    # Then it lived its whole lifetime, kept alive by heartbeats, then ended normally
    assert lived >= 3.5, f"the stream ended after {lived:.1f}s, before its 4 s lifetime"
    assert len(reader.comments) >= 2, reader.comments


def test_a_garbage_message_on_a_user_channel_is_dropped_and_streams_go_on(
    gunicorn_server, live_app, live_user, redis_server
):
    # Given an open stream, and someone publishing garbage on its user's channel
    user_id, name = live_user("alice")
    session = live_session(gunicorn_server, name)
    reader = connect(gunicorn_server, session)
    reader.wait_for(lambda r: r.retry is not None, 30, "the stream to open")
    channel = live.channel_for(user_id)
    garbage = redis.Redis.from_url(redis_server.url)
    for junk in (b"not json", b"[1, 2]", b'{"unexpected": 1}', b"\xff\xfe"):
        garbage.publish(channel, junk)

    # When a real event follows
    with live_app.app_context():
        live.publish(user_id, events.PROGRESS, {"task_id": "after-garbage"})

    # Then the stream delivers it, and the process still reports its subscription as live
    reader.wait_for(
        lambda r: any(e["data"].get("task_id") == "after-garbage" for e in r.events), 10,
        "the event published after the garbage",
    )  # fmt: skip
    reader.close()
    health = session.get(gunicorn_server + "/healthz", timeout=5).json()
    assert health["subscription"] == "ok" and health["status"] == "ok"
