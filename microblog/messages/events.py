"""The messages' event on the live channel: the reader's unread count.

``message.unread`` carries ``{"count": N}``, the recipient's unread count once a message is
stored or the inbox opened. It is a state, not a delta, so a page that resumes its stream and
replays several of them ends on the truth; with Redis away a page learns the count at its
next load. See ``docs/events.md``.
"""

from microblog.live import channel

UNREAD = "message.unread"
TYPES = channel.declare_event_types(UNREAD)


def announce_unread(user_id: int, count: int) -> None:
    """Tell every open page of the user its unread count; never raises (see ``announce``)."""
    channel.announce(user_id, UNREAD, {"count": count})
