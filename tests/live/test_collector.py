"""Garbage-collection pauses: open streams' objects frozen out of full collections, frozen
garbage reclaimed once it piles up, and every pause timed."""

import gc
import logging
import threading
import weakref

import pytest
import requests
from werkzeug.test import EnvironBuilder

from microblog import collector
from tests.support.servers import LIVE_METRICS_TOKEN
from tests.support.web import live_session


@pytest.fixture
def frozen():
    """Freeze and unfreeze in this test only: the test process must collect as usual after."""
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_a_tick_puts_what_is_alive_out_of_the_collectors_sight(frozen):
    tuner = collector.Collector(open_streams=lambda: 0)
    kept = [Node() for _ in range(100)]
    tuner.tick()
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)
    assert tuner.reclaims == 0


def test_frozen_garbage_is_reclaimed_once_the_open_streams_do_not_explain_it(frozen):
    streams = 1_000_000
    tuner = collector.Collector(open_streams=lambda: streams)
    leaked = [Node() for _ in range(20_000)]
    tuner.tick()  # frozen while alive
    refs = [weakref.ref(node) for node in leaked]
    del leaked  # now garbage among the frozen objects

    # While a million streams would explain that many frozen objects, nothing is collected
    tuner.check()
    assert all(ref() is not None for ref in refs) and tuner.reclaims == 0

    # Once they are gone, the frozen set is far more than they explain: unfreeze and collect
    streams = 0
    tuner.tick()  # between checks: nothing yet
    assert tuner.reclaims == 0
    tuner.check()
    assert tuner.reclaims == 1
    assert all(ref() is None for ref in refs)


def test_objects_of_closed_streams_leave_the_frozen_set_without_a_collection(
    app, client, auth, frozen
):
    auth.signed_in("alice")
    cookie = f"session={client.get_cookie('session').value}"

    def open_freeze_close(count: int) -> tuple[int, int]:
        """Open ``count`` streams, freeze, close them; return how many objects were frozen
        with them and how many frozen objects then turn out to be garbage. Each stream is a
        WSGI call in a thread of its own, as a server makes it (the test client would add a
        request object of its own per call, in a reference cycle)."""
        opened, close = threading.Barrier(count + 1, timeout=30), threading.Event()

        def stream() -> None:
            environ = EnvironBuilder("/stream", headers={"Cookie": cookie}).get_environ()
            body = app(environ, lambda status, headers, exc_info=None: None)
            assert next(iter(body)).startswith(b"retry:")
            opened.wait()
            close.wait(30)
            body.close()

        gc.collect()
        gc.freeze()
        before = gc.get_freeze_count()
        threads = [threading.Thread(target=stream) for _ in range(count)]
        for thread in threads:
            thread.start()
        opened.wait()
        gc.freeze()
        held = gc.get_freeze_count() - before
        close.set()
        for thread in threads:
            thread.join(timeout=10)
        del threads, thread
        # Garbage made meanwhile outside the frozen set (other threads of this test process)
        # is collected first, so the count below is the frozen set's alone.
        gc.collect()
        gc.unfreeze()
        return held, gc.collect()

    open_freeze_close(100)  # the first streams fill caches that stay (routes, templates…)
    # Given 50 streams open and frozen, when they close, reference counting frees their
    # objects: no cycles hold them, so freezing them leaks nothing
    held, garbage = open_freeze_close(100)
    assert held > 100 * 50, f"{held} objects for 100 streams"
    # Had a stream's objects been held in cycles, nearly all would be garbage now; what is
    # found (measured: 26 to 136 objects, however many streams) comes from elsewhere
    assert garbage < held / 10, f"{garbage} of {held} frozen objects were left as garbage"


def test_each_collection_is_timed_and_a_long_pause_is_logged(monkeypatch, caplog):
    timer = collector.PauseTimer()
    full = collector.PAUSES.labels("2")
    count = full._sum.get(), sum(b.get() for b in full._buckets)

    gc.callbacks.append(timer)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(timer)
    assert sum(b.get() for b in full._buckets) == count[1] + 1
    assert full._sum.get() > count[0]

    # A pause past 100 ms is a warning naming its length
    clock = iter([10.0, 10.25])
    monkeypatch.setattr(collector.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.WARNING, logger="microblog.collector"):
        timer("start", {"generation": 2})
        timer("stop", {"generation": 2})
    assert "generation-2 garbage collection paused this process for 250 ms" in caplog.text


def test_gunicorn_workers_time_their_collections(gunicorn_server, live_user):
    _, name = live_user("gcwatcher")
    live_session(gunicorn_server, name).get(gunicorn_server + "/", timeout=10)
    text = requests.get(
        gunicorn_server + "/metrics",
        headers={"Authorization": f"Bearer {LIVE_METRICS_TOKEN}"},
        timeout=10,
    ).text
    assert 'microblog_gc_pause_seconds_count{generation="0"}' in text
