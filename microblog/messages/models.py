"""Private messages, their keyset-paged inbox, and the unread count kept beside the user.

The unread count is a column of the recipient's row, raised in the same transaction as the
message is stored and cleared when the inbox is opened: reading it is one primary-key lookup
whatever the number of messages (a COUNT over a range of the inbox index would cost as many
index entries as there are unread messages).
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, bindparam, select, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from microblog.auth.models import User
from microblog.extensions import db
from microblog.models import utcnow
from microblog.posts.models import Cursor, Listing, beyond_cursor, key_order
from microblog.types import UTCDateTime

MAX_MESSAGE_LENGTH = 1000


class Message(db.Model):
    __table_args__ = (
        # A user's inbox in order (the /messages page), newest first.
        Index("ix_message_recipient_id_timestamp", "recipient_id", "timestamp", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(String(MAX_MESSAGE_LENGTH))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sender: Mapped[User] = relationship(foreign_keys=[sender_id], lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Message {self.id} from {self.sender_id} to {self.recipient_id}>"


class Inbox(Listing):
    """The messages a user received, newest first."""

    def __init__(self, user_id: int) -> None:
        super().__init__(select(Message).where(Message.recipient_id == user_id))

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Message]:
        query = self.query.where(beyond_cursor(Message, newest_first)) if beyond else self.query
        query = query.order_by(*key_order(Message, newest_first)).limit(bindparam("count"))
        parameters = {"count": count, **(beyond.parameters() if beyond else {})}
        return list(db.session.scalars(query, parameters))


def store_message(sender_id: int, recipient_id: int, body: str) -> int:
    """Store a message and raise the recipient's unread count; no commit. Return the count."""
    db.session.add(Message(sender_id=sender_id, recipient_id=recipient_id, body=body))
    return db.session.scalar(
        update(User)
        .where(User.id == recipient_id)
        .values(unread_messages=User.unread_messages + 1)
        .returning(User.unread_messages)
        .execution_options(synchronize_session=False)
    )


def mark_read(user_id: int) -> bool:
    """Clear the user's unread count; no commit. Return whether there was any."""
    cleared = db.session.scalar(
        update(User)
        .where(User.id == user_id, User.unread_messages != 0)
        .values(unread_messages=0)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    return cleared is not None


def unread_count(user_id: int) -> int:
    """Return the user's unread count as committed now (not as loaded with the request)."""
    return db.session.scalar(select(User.unread_messages).where(User.id == user_id)) or 0
