"""Live events on a real Redis Cluster (sharded pub/sub) and behind real sentinels: events reach
their streams through one subscription per shard, a stream misses nothing when the master
holding its channel is killed and replaced by its replica, and an export watched in a real
browser finishes, its card at 100 %, when a master dies under it."""

import logging
import time

import pytest
import redis
from redis.crc import key_slot
from sqlalchemy import select

from devkit.redis_topologies import RedisClusterServers, SentinelServers
from devkit.services import free_port, wait_until
from microblog import create_app, throttle
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.live import channel
from microblog.live.stream import Broadcaster, sse
from microblog.live.subscription import opener
from microblog.redis_clients import broker_client
from tests.support.browser import bar_value, sign_in, watch_csp, watch_task_bar
from tests.support.data import task_row
from tests.support.servers import running_worker

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

EXPORTED_POSTS = 150_000  # enough for the export to take a few seconds


@pytest.fixture(scope="module")
def cluster():
    """A cluster of this module's own: its tests kill masters."""
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


@pytest.fixture
def sentinels():
    """A master, its replica and three sentinels, for one test: each kills the master."""
    servers = SentinelServers().start()
    yield servers
    servers.stop()


def app_on(**config):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **config})


def close_database(app) -> None:
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def cluster_app(cluster, redis_server):
    return app_on(REDIS_URL=redis_server.url, EVENTS_REDIS_URL=cluster.url,
                  EVENTS_REDIS_CLUSTER=True)  # fmt: skip


@pytest.fixture
def hubs():
    made = []

    def make(app) -> Broadcaster:
        made.append(Broadcaster(opener(app.config)))
        return made[-1]

    yield make
    for hub in made:
        hub.stop()


def publish_when_possible(app, user_id: int, n: int, timeout: float = 30) -> str:
    """Publish event ``n`` on the user's channel, retrying while a failover is under way."""
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            try:
                return channel.publish(user_id, "task.progress", {"n": n})
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def received(app, channel_name: str, last_id: str, inbox, want: int, timeout: float = 30):
    """Read the stream (replay, then live, then what a lost subscription missed) until
    ``want`` events came; return their ``n`` values and ids."""
    got = []
    deadline = time.monotonic() + timeout
    with app.app_context():
        app.config["SSE_HEARTBEAT_SECONDS"] = 1
        for message in sse.messages(channel_name, last_id, inbox, allowed=lambda: True):
            if message is not None:
                got.append((message.data["n"], message.id))
            if len(got) >= want or time.monotonic() > deadline:
                break
    return got


class Watched:
    """A stream of one user through a broadcaster, which has had the user's first event."""

    def __init__(self, app, hub: Broadcaster, user_id: int) -> None:
        self.app, self.user_id = app, user_id
        self.name = channel.channel_for(user_id)
        with app.app_context():
            start = channel.latest_id(self.name)
        self.inbox = hub.listen(self.name)
        assert hub.wait_subscribed(self.inbox, 30)
        first = publish_when_possible(app, user_id, 1)
        assert received(app, self.name, start, self.inbox, want=1) == [(1, first)]
        self.after = first

    def gets_every_later_event(self, *numbers: int) -> None:
        """Publish ``numbers`` now; the stream must deliver each once, in order, live or from
        the log."""
        ids = [publish_when_possible(self.app, self.user_id, n) for n in numbers]
        got = received(self.app, self.name, self.after, self.inbox, want=len(numbers))
        assert got == list(zip(numbers, ids, strict=True))


def test_events_spread_over_the_shards_and_reach_one_subscription_per_shard(
    cluster, cluster_app, hubs
):
    # Given a web process's broadcaster with streams of 60 users
    hub = hubs(cluster_app)
    users = range(1, 61)
    inboxes = {user: hub.listen(channel.channel_for(user)) for user in users}
    assert all(hub.wait_subscribed(inbox, 30) for inbox in inboxes.values())
    # When one event is published for each of them
    ids = {user: publish_when_possible(cluster_app, user, user) for user in users}
    # Then each stream gets its own event, with the id its log gave it
    for user, inbox in inboxes.items():
        message = inbox.get(timeout=5)
        assert (message.data, message.id) == ({"n": user}, ids[user])
        assert inbox.empty()
    # through sharded pub/sub: every master carries some of the channels, each to exactly one
    # subscription of this process
    per_master = {}
    for port in cluster.shard_masters():
        node = redis.Redis(port=port)
        names = [channel.channel_for(user) for user in users]
        numsub = node.execute_command("PUBSUB", "SHARDNUMSUB", *names)
        held = {numsub[i].decode(): numsub[i + 1] for i in range(0, len(numsub), 2)}
        per_master[port] = sum(1 for user in users
                               if cluster.master_of(channel.channel_for(user)) == port
                               and held[channel.channel_for(user)] == 1)  # fmt: skip
        pubsub_clients = [c for c in node.client_list() if int(c.get("ssub", 0)) > 0]
        assert len(pubsub_clients) == 1, pubsub_clients
    assert sum(per_master.values()) == 60 and min(per_master.values()) > 0, per_master
    # and the log of each user sits in its channel's slot, readable to resume from
    with cluster_app.app_context():
        assert [m.data for m in channel.missed_since(channel.channel_for(7), "0")] == [{"n": 7}]


def test_a_stream_misses_nothing_when_its_shard_master_is_killed(cluster, cluster_app, hubs):
    # Given a stream of user 42 that has had its first event
    stream = Watched(cluster_app, hubs(cluster_app), 42)
    # When the master holding its slot is killed and its replica takes over
    killed = cluster.kill_master_of(stream.name)
    cluster.wait_failed_over()
    assert cluster.master_of(stream.name) != killed
    # Then the stream delivers every later event once, in order, live or from the log
    stream.gets_every_later_event(2, 3, 4)


def test_the_broker_and_the_events_follow_a_sentinel_failover(sentinels, hubs):
    # Given an app whose broker and events reach Redis through the sentinels
    app = app_on(REDIS_URL="redis://127.0.0.1:1/0", REDIS_SENTINELS=sentinels.sentinel_addresses,
                 REDIS_SENTINEL_MASTER=sentinels.MASTER)  # fmt: skip
    broker = broker_client(app.config, socket_timeout=2)
    assert broker.set("before", 1) and broker.info("server")["tcp_port"] == sentinels.master()
    stream = Watched(app, hubs(app), 5)
    # When the master is killed and the sentinels promote the replica
    old = sentinels.kill_master()
    new = sentinels.wait_failed_over(old)
    # Then the broker's client talks to the new master
    wait_until(lambda: _works(broker), 30, "the broker's client to reach the new master")
    assert broker.info("server")["tcp_port"] == new
    # and the stream gets the events published after it, once each, in order
    stream.gets_every_later_event(2, 3)


def test_every_role_reaches_a_master_that_wants_a_password_in_the_urls_database():
    # Given sentinels watching a master that wants a password, and an app whose REDIS_URL gives
    # that password and database 3
    servers = SentinelServers(password="s3cret").start()
    try:
        app = app_on(REDIS_URL="redis://:s3cret@127.0.0.1:1/3",
                     REDIS_SENTINELS=servers.sentinel_addresses,
                     REDIS_SENTINEL_MASTER=servers.MASTER)  # fmt: skip
        # When the broker, the live channel and a throttle each write
        assert broker_client(app.config, socket_timeout=2).set("from-the-broker", 1)
        with app.app_context():
            channel.publish(7, "task.progress", {"pct": 1})
        with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.7"}):
            throttle.hit("LOGIN_LIMIT_PER_ADDRESS", "192.0.2.7")
        # Then each wrote in database 3 of the master, and nothing went to database 0
        port = servers.master()
        database = {number: redis.Redis(port=port, password="s3cret", db=number, socket_timeout=2)
                    for number in (0, 3)}  # fmt: skip
        assert database[3].get("from-the-broker") == b"1"
        assert database[3].xlen(channel.log_key(channel.channel_for(7))) == 1
        assert database[3].keys("LIMITS:*"), "the throttle counted nothing on the master"
        assert database[0].dbsize() == 0
    finally:
        servers.stop()


def _works(client) -> bool:
    try:
        return bool(client.set("after", 1))
    except redis.RedisError:
        return False


def test_a_stream_that_stops_reading_is_closed_at_its_limit_on_the_cluster(cluster_app):
    # Given a broadcaster on the cluster whose streams may hold 5 events, and one that reads none
    hub = Broadcaster(opener(cluster_app.config), inbox_size=5)
    try:
        stuck = hub.listen(channel.channel_for(77))
        assert hub.wait_subscribed(stuck, 30)
        # When 20 events arrive for it
        for n in range(20):
            publish_when_possible(cluster_app, 77, n)
        # Then it is closed at its limit, and its channel let go on its shard
        wait_until(lambda: stuck.overflowed, 30, "the stuck stream to be closed")
        assert stuck.qsize() == 5 and hub.listener_count == 0
        with cluster_app.app_context():
            node = channel.redis_client().get_node_from_key(channel.channel_for(77))
        numsub = lambda: node.redis_connection.execute_command(  # noqa: E731
            "PUBSUB", "SHARDNUMSUB", channel.channel_for(77))[1]  # fmt: skip
        wait_until(lambda: numsub() == 0, 30, "the channel to be dropped")
    finally:
        hub.stop()


@pytest.fixture
def fresh_cluster():
    """A cluster for one test that kills one of its masters."""
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


@pytest.mark.parametrize("dies", ["the sentinels' broker master", "the events' shard master"])
def test_an_export_survives_a_redis_master_dying(
    dies, request, browser, live_stacks, database, live_env, live_user, smtp_server, tmp_path
):
    # Given gunicorn and a worker whose broker and events are behind the sentinels (or whose
    # events are on a Redis Cluster), and a user with enough posts for the export to take a
    # few seconds, on their profile page in a real browser
    if dies == "the sentinels' broker master":
        sentinels = request.getfixturevalue("sentinels")
        redis_env = {"REDIS_URL": sentinels.url, "REDIS_SENTINEL_MASTER": sentinels.MASTER,
                     "REDIS_SENTINELS": ",".join(sentinels.sentinel_addresses)}  # fmt: skip
    else:
        cluster = request.getfixturevalue("fresh_cluster")
        redis_env = {"EVENTS_REDIS_URL": cluster.url, "EVENTS_REDIS_CLUSTER": "1"}
    own_redis = live_env["REDIS_URL"]  # the test's: its site closes with it
    server = live_stacks.gunicorn(database, own_redis, redis_env)
    app = live_stacks.app(database, own_redis, redis_env)
    request.addfinalizer(lambda: close_database(app))
    user_id, name = live_user("failover", posts=EXPORTED_POSTS)
    context = browser.new_context(base_url=server)
    page = watch_csp(context.new_page())
    try:
        sign_in(page, name)
        page.goto(f"/user/{name}")
        watch_task_bar(page)
        with running_worker({**live_env, **redis_env}, tmp_path / "worker.log"):
            page.click("#export-button")
            page.wait_for_function("() => window.seenValues.some(v => v > 0 && v < 100)",
                                   timeout=60_000)  # fmt: skip
            # When that master is killed mid-export
            assert bar_value(page) < 100, "the export ended before the master died"
            killed_at = time.monotonic()
            if dies == "the sentinels' broker master":
                sentinels.wait_failed_over(sentinels.kill_master())
            else:
                cluster.kill_master_of(channel.channel_for(user_id))
                cluster.wait_failed_over()
            # Then the open page's card reaches 100 % without a reload, within 30 s
            left = max(0.0, 30 - (time.monotonic() - killed_at))
            page.wait_for_selector("#tasks .task[data-status='succeeded'] .task-download",
                                   timeout=left * 1000)  # fmt: skip
        assert bar_value(page) == 100
        assert page.refused_by_csp == []
        with app.app_context():
            task = db.session.scalar(select(Task).where(Task.user_id == user_id))
            assert task.status == "succeeded"
        # and the user got exactly one email
        assert len([m for m in smtp_server.messages if name in m["To"]]) == 1
    finally:
        context.close()


def move_slot(cluster, key: str) -> int:
    """Move ``key``'s slot, with its keys, to another master, as a resharding does; return the
    port of its new master."""
    slot = redis.cluster.key_slot(key.encode())
    source_port = cluster.master_of(key)
    target_port = next(port for port in cluster.shard_masters() if port != source_port)
    source, target = redis.Redis(port=source_port), redis.Redis(port=target_port)
    source_id, target_id = (node.execute_command("CLUSTER", "MYID").decode()
                            for node in (source, target))  # fmt: skip
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for port in cluster.shard_masters():
        redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_until(lambda: cluster.master_of(key) == target_port, 30, "the slot to move")
    return target_port


def test_a_stream_follows_its_channel_to_the_shard_its_slot_moved_to(cluster, cluster_app, hubs):
    # Given a stream of user 314 that has had its first event
    stream = Watched(cluster_app, hubs(cluster_app), 314)
    # When its slot (its channel and its log) moves to another master
    move_slot(cluster, stream.name)
    # Then events published after the move reach the stream, once each, in order
    stream.gets_every_later_event(2, 3)


def test_an_events_cluster_no_node_answers_is_an_outage_not_a_bug(
    app, auth, client, make_user, mailbox, caplog, monkeypatch
):
    # Given the events on a Redis Cluster of which no node answers (for the whole test: the
    # task's end is not retried in the background)
    monkeypatch.setattr(events, "FINAL_EVENT_RETRY_SECONDS", 0)
    app.config.update(EVENTS_REDIS_CLUSTER=True,
                      EVENTS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip
    app.extensions.pop("microblog.redis", None)
    alice = make_user("alice")
    with app.app_context():
        task_id = launch(export_posts, alice).id
        # When an export runs: its events are lost and logged, the rest works
        with caplog.at_level(logging.WARNING, logger="microblog"):
            export_posts(task_id)
        assert task_row(app, task_id).status == TaskStatus.SUCCEEDED
    assert "could not publish task.finished" in caplog.text
    assert "the Redis Cluster is away" in caplog.text
    assert [m["To"] for m in mailbox] == ["alice@example.com"]
    # And a signed-in page still renders (without its live link), and health tells which
    auth.login("alice")
    assert client.get("/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["events_redis"] == "error: ConnectionError"
    assert health.get_json()["redis"] == "ok"


def test_an_events_cluster_that_goes_away_is_an_outage_not_a_bug(fresh_cluster, redis_server):
    # Given a process that has published on the cluster
    app = app_on(REDIS_URL=redis_server.url, EVENTS_REDIS_URL=fresh_cluster.url,
                 EVENTS_REDIS_CLUSTER=True)  # fmt: skip
    with app.app_context():
        channel.publish(5, "task.progress", {"n": 1})
        # When every node of the cluster dies
        fresh_cluster.stop()
        # Then publishing fails as with a single Redis away, and announcing does not fail
        with pytest.raises(redis.ConnectionError, match="the Redis Cluster is away"):
            channel.publish(5, "task.progress", {"n": 2})
        channel.announce(5, "task.progress", {"n": 3})


@pytest.mark.parametrize(
    "name", [channel.channel_for(42), channel.channel_for(10**12), channel.OPERATORS]
)
def test_a_channel_and_its_log_share_a_redis_cluster_slot(name):
    # One script appends to the log and publishes on the channel: on a Redis Cluster (and for
    # its sharded pub/sub) both must map to one slot, which the log's hash tag ensures.
    assert key_slot(channel.log_key(name).encode()) == key_slot(name.encode())
    assert "{" not in name  # a channel's name is hashed whole
