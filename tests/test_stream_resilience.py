"""Streams end cleanly when Redis goes away or their lifetime is up, and resume after."""

import time

import pytest
import redis

from microblog import create_app
from microblog.jobs import events
from microblog.services import RedisServer, wait_until
from tests.conftest import Gunicorn, live_session
from tests.helpers import SSEReader


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


def test_stream_ends_cleanly_when_redis_stops_and_resumes_when_it_is_back(
    server, own_redis, live_database, live_user
):
    user_id, name = live_user("alice")
    session = live_session(server, name)
    publisher = create_app({"SQLALCHEMY_DATABASE_URI": live_database, "REDIS_URL": own_redis.url})
    reader = connect(server, session)
    reader.wait_for(lambda r: r.retry is not None, 10, "the stream to open")

    # When Redis stops, the stream ends (the browser would reconnect after `retry`)
    own_redis.stop()
    reader.wait_for_end(10)
    reader.close()
    assert session.get(server + "/", timeout=5).status_code == 200  # pages still render

    # When Redis is back on the same address, a reconnecting client gets new events
    own_redis.start()

    def receives_an_event() -> bool:
        reader = connect(server, session)
        try:
            reader.wait_for(lambda r: r.retry is not None, 5, "the retry hint")
            with publisher.app_context():
                events.publish(user_id, events.PROGRESS, {"task_id": "t", "progress": 1})
            reader.wait_for_events(1, timeout=2)
            return True
        except TimeoutError:
            return False
        finally:
            reader.close()

    wait_until(receives_an_event, 30, "the stream to work again after Redis came back")


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
    reader.wait_for(lambda r: r.retry is not None, 10, "the stream to open")
    channel = events.channel_for(user_id)
    garbage = redis.Redis.from_url(redis_server.url)
    for junk in (b"not json", b"[1, 2]", b'{"unexpected": 1}', b"\xff\xfe"):
        garbage.publish(channel, junk)

    # When a real event follows
    with live_app.app_context():
        events.publish(user_id, events.PROGRESS, {"task_id": "after-garbage"})

    # Then the stream delivers it, and the process still reports its subscription as live
    reader.wait_for(
        lambda r: any(e["data"].get("task_id") == "after-garbage" for e in r.events), 10,
        "the event published after the garbage",
    )  # fmt: skip
    reader.close()
    health = session.get(gunicorn_server + "/healthz", timeout=5).json()
    assert health["subscription"] == "ok" and health["status"] == "ok"
