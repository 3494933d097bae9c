"""The per-process broadcaster on a real Redis: channels subscribed as streams come and go,
and a client that stops reading cannot grow memory."""

import json
import queue

import pytest
import redis

from devkit.services import wait_until
from microblog import metrics
from microblog.live import channel, subscription
from microblog.live.stream import Broadcaster
from microblog.redis_clients import channel_prefix


@pytest.fixture
def hubs(redis_server):
    """Make broadcasters on the session's Redis; each is stopped after the test."""
    made = []

    def make(**options) -> Broadcaster:
        made.append(Broadcaster(redis_server.url, **options))
        return made[-1]

    yield make
    for hub in made:
        hub.stop()


@pytest.fixture
def client(redis_server):
    """A client of the test's Redis database; ``client.named(channel)`` is a channel's name
    in Redis, where the database's channels carry its number."""
    client = redis.Redis.from_url(redis_server.url)
    prefix = channel_prefix({"REDIS_URL": redis_server.url})
    client.named = lambda channel: prefix + channel
    yield client
    client.close()


PREFIX = "user.hub"
CHANNEL_7, CHANNEL_9 = f"{PREFIX}-7", f"{PREFIX}-9"


def subscribers(client, channel: str) -> int:
    name = client.named(channel)
    return dict(client.pubsub_numsub(name))[name.encode()]


def subscribed_channels(client) -> set[bytes]:
    return set(client.pubsub_channels(client.named(f"{PREFIX}-*")))


def test_channels_come_and_go_with_their_streams_and_nothing_leaks(hubs, client):
    hub = hubs()
    assert hub.wait_ready(30)
    # 1,000 streams open and close, a hundred at a time, over 50 users' channels
    for round_ in range(10):
        inboxes = [hub.listen(f"{PREFIX}-{(round_ * 100 + i) % 50}") for i in range(100)]
        assert all(hub.wait_subscribed(inbox, 30) for inbox in inboxes)
        assert hub.channel_count == 50 and hub.listener_count == 100
        assert len(subscribed_channels(client)) == 50
        for inbox in inboxes:
            hub.leave(inbox)
    # Then nothing is left: no listener, no channel, no subscription in Redis
    assert hub.listener_count == 0 and hub.channel_count == 0
    wait_until(lambda: subscribed_channels(client) == set(), 30, "the channels to be dropped")
    assert hub._confirmed == {}


def test_a_channel_stays_subscribed_while_any_of_its_streams_is_open(hubs, client):
    hub = hubs()
    first, second = hub.listen(CHANNEL_7), hub.listen(CHANNEL_7)
    assert hub.wait_subscribed(first, 30) and hub.wait_subscribed(second, 30)
    hub.leave(first)
    message = {"data": {"n": 1}, "type": "task.progress", "id": "1-1"}
    client.publish(client.named(CHANNEL_7), json.dumps(message))
    assert second.get(timeout=5).data == {"n": 1}
    assert subscribers(client, CHANNEL_7) == 1
    hub.leave(second)
    wait_until(lambda: subscribers(client, CHANNEL_7) == 0, 30, "the channel to be dropped")


def test_a_client_that_stops_reading_is_closed_at_its_queue_limit(hubs, client):
    hub = hubs(inbox_size=5)
    stuck = hub.listen(CHANNEL_9)
    assert hub.wait_subscribed(stuck, 30)
    before = metrics.STREAMS_OVERFLOWED._value.get()
    for n in range(20):  # nobody reads
        message = {"data": {"n": n}, "type": "task.progress", "id": f"1-{n}"}
        client.publish(client.named(CHANNEL_9), json.dumps(message))
    wait_until(lambda: stuck.overflowed, 30, "the stuck stream to be closed")
    assert stuck.qsize() == 5  # held no more than its limit
    assert hub.listener_count == 0
    assert metrics.STREAMS_OVERFLOWED._value.get() == before + 1
    wait_until(lambda: subscribers(client, CHANNEL_9) == 0, 30, "the channel to be dropped")


def test_sites_on_two_databases_of_one_redis_never_hear_each_other(redis_instance, make_app):
    # Given two sites on databases 0 and N of one Redis server (pub/sub ignores the number),
    # each with a stream open on its user 5's channel
    sites = [make_app(REDIS_URL=redis_instance.url),
             make_app(REDIS_URL=redis_instance.fresh_database().url)]  # fmt: skip
    hubs = [Broadcaster(subscription.opener(site.config)) for site in sites]
    try:
        inboxes = [hub.listen(channel.channel_for(5)) for hub in hubs]
        assert all(hub.wait_subscribed(inbox, 30) for hub, inbox in zip(hubs, inboxes, strict=True))
        # When each site publishes an event for its user 5
        for n, site in enumerate(sites):
            with site.app_context():
                channel.publish(5, "task.progress", {"task_id": f"site-{n}"})
        # Then each stream gets its own site's event, and no other
        for n, inbox in enumerate(inboxes):
            assert inbox.get(timeout=5).data["task_id"] == f"site-{n}"
            with pytest.raises(queue.Empty):
                inbox.get(timeout=0.5)
    finally:
        for hub in hubs:
            hub.stop()
