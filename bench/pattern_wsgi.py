"""The app with the previous subscription design, for measuring against in the same run.

Before per-channel subscriptions, each web process held one ``PSUBSCRIBE user.*``: Redis sent
it every user's events and it dropped those with no listener there. ``PatternBroadcaster``
does exactly that with the current stream code around it, so the benchmark compares only the
subscriptions.
"""

import queue

from microblog import create_app
from microblog.live import stream

PATTERN = "user.*"


class PatternBroadcaster(stream.Broadcaster):
    """Every user's channel through one pattern; a listener's channel is "subscribed" as soon
    as the pattern is."""

    def _apply_requests(self, subscription) -> None:
        pubsub = subscription.pubsub  # one Redis: the pattern design has no cluster form
        if not pubsub.patterns:  # a new connection: confirmed once Redis answers
            self._subscribed = False
            pubsub.psubscribe(PATTERN)
        while True:
            try:
                channel = self._requests.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                if channel not in self._listeners:
                    self._confirmed.pop(channel, None)
                elif self._subscribed:
                    self._confirmed[channel].set()

    def _handle(self, raw: dict) -> None:
        kind = raw["type"]
        if kind == "pmessage":
            channel = raw["channel"]
            self._deliver(channel.decode() if isinstance(channel, bytes) else channel, raw["data"])
        elif kind == "psubscribe":
            self._subscribed = True
            with self._lock:
                confirmed = list(self._confirmed.values())
            for event in confirmed:
                event.set()

    _subscribed = False


stream.Broadcaster = PatternBroadcaster  # what stream.broadcaster() starts in each process
app = create_app()
