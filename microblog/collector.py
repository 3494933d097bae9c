"""Short garbage-collection pauses in web processes that hold thousands of open streams.

Every open stream keeps a hundred-odd objects the collector tracks (its greenlet, generators,
request, socket…). A full collection walks all of them, and the process's every stream waits
meanwhile: with thousands of streams that is a long pause. Yet a stream's objects are freed
by reference counting when it closes, so the collector gains nothing from walking them.

So every ``interval`` seconds everything alive is frozen (``gc.freeze``: moved out of the
collector's sight, at no cost per object); a full collection then walks only what arrived
since. Frozen garbage, which only reference cycles can leave, is never collected; there is
very little of it. A young collection before each freeze would keep even that out, but at
scale it costs more than it saves. When the frozen
objects outgrow what the open streams explain (counted every few minutes), they are unfrozen
and collected once: a long pause, but one that comes with garbage actually left behind
rather than every few seconds.

Pauses are timed: ``microblog_gc_pause_seconds{generation}`` and a warning in the log for
any over ``LONG_PAUSE_SECONDS``. The measurements behind these choices are in
``docs/performance.md``.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Histogram

log = logging.getLogger(__name__)

PAUSES = Histogram(
    "microblog_gc_pause_seconds",
    "Garbage-collection pauses in web processes, by generation (2 = a full collection).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LONG_PAUSE_SECONDS = 0.1
OBJECTS_PER_STREAM = 150  # tracked objects an open stream may keep, with a margin
# Counting the frozen objects walks them all, so it is done every few minutes, not at every
# freeze.
CHECK_SECONDS = 300


class PauseTimer:
    """Time every collection (a ``gc.callbacks`` entry); log the long ones."""

    def __init__(self) -> None:
        self._started = 0.0
        self._observers = [PAUSES.labels(str(generation)) for generation in range(3)]

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self._observers[info["generation"]].observe(pause)
        if pause > LONG_PAUSE_SECONDS:
            log.warning(
                "a generation-%d garbage collection paused this process for %.0f ms",
                info["generation"],
                pause * 1000,
            )


class Collector:
    """Freeze what is alive every ``interval`` seconds; reclaim frozen garbage when there
    is more than ``open_streams()`` accounts for, by ``slack`` times."""

    def __init__(
        self, open_streams: Callable[[], int], interval: float = 1.0, slack: float = 1.5
    ) -> None:
        self.open_streams = open_streams
        self.interval = interval
        self.slack = slack
        self.reclaims = 0
        self._next_check = time.monotonic() + CHECK_SECONDS
        self._stop = threading.Event()
        self._base = gc.get_freeze_count()  # the loaded app, frozen by start()
        self._thread = threading.Thread(target=self._run, name="gc-freezer", daemon=True)

    def start(self) -> "Collector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # never let tuning end the process's collections
                log.exception("garbage collection tuning failed")

    def tick(self) -> None:
        """Freeze what is alive now, after a check for frozen garbage when one is due."""
        if time.monotonic() >= self._next_check:
            self.check()
        gc.freeze()

    def check(self) -> None:
        """Unfreeze and collect everything if the frozen objects are more than the open
        streams explain, ``slack`` times over."""
        self._next_check = time.monotonic() + CHECK_SECONDS
        frozen = gc.get_freeze_count()  # a walk of every frozen object: not at every tick
        if frozen > self.slack * (self._base + OBJECTS_PER_STREAM * self.open_streams()):
            gc.unfreeze()
            gc.collect()
            self.reclaims += 1
            log.info("reclaimed frozen garbage: %d objects were frozen", frozen)


def start(open_streams: Callable[[], int], interval: float) -> Collector | None:
    """Time collections in this process, freeze the loaded app and, if ``interval`` > 0,
    keep streams' objects out of full collections (see the module's description)."""
    gc.callbacks.append(PauseTimer())
    gc.collect()
    gc.freeze()  # modules, routes, templates: alive as long as the process
    return Collector(open_streams, interval).start() if interval > 0 else None
