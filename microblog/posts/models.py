"""The Post model and the queries that list posts."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Index, Select, String, literal, or_, select, tuple_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime

MAX_POST_LENGTH = 280


class Post(db.Model):
    __table_args__ = (Index("ix_post_user_id_timestamp", "user_id", "timestamp", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(MAX_POST_LENGTH))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))

    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Post {self.id} by {self.user_id}>"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEWEST_FIRST = (Post.timestamp.desc(), Post.id.desc())


@dataclass(frozen=True)
class Cursor:
    """A position in a newest-first list of posts: the (timestamp, id) of the post at its edge.

    Written in links as "<microseconds since the epoch>.<id>", ASCII digits only.
    """

    timestamp: datetime
    id: int

    @classmethod
    def of(cls, post: Post) -> "Cursor":
        return cls(post.timestamp, post.id)

    @classmethod
    def parse(cls, text: str) -> "Cursor | None":
        """Return the cursor ``text`` names, or None if it names none."""
        micros, dot, post_id = text.partition(".")
        digits = all(part.isascii() and part.isdigit() for part in (micros, post_id))
        if not (dot and digits and len(micros) <= 17 and len(post_id) <= 18):
            return None
        try:
            return cls(EPOCH + timedelta(microseconds=int(micros)), int(post_id))
        except OverflowError:  # past the year 9999
            return None

    def as_sql(self):
        """Return the cursor as a row value, typed like the columns it is compared with."""
        return tuple_(literal(self.timestamp, Post.timestamp.type), literal(self.id, Post.id.type))

    def __str__(self) -> str:
        return f"{(self.timestamp - EPOCH) // timedelta(microseconds=1)}.{self.id}"


@dataclass(frozen=True)
class Page:
    """One page of a list: its posts, and where the pages just newer and older begin."""

    items: list[Post]
    newer: Cursor | None  # link to the page newer than this one ("after" its first post)
    older: Cursor | None  # link to the page older than this one ("before" its last post)


def page_of(
    query: Select, per_page: int, before: Cursor | None = None, after: Cursor | None = None
) -> Page:
    """Return one page of ``query``'s posts, newest first, by keyset: no OFFSET, no COUNT.

    ``before`` gives the page older than a cursor; ``after`` the page newer than it; neither,
    the newest page. One indexed range scan of ``per_page + 1`` rows tells whether more lie
    beyond; on the side the reader came from, more lie there by definition.
    """
    key = tuple_(Post.timestamp, Post.id)
    if after is not None:
        oldest_first = (Post.timestamp.asc(), Post.id.asc())
        rows = _first_rows(query.where(key > after.as_sql()), oldest_first, per_page + 1)
        items = rows[:per_page][::-1]
        more_newer, more_older = len(rows) > per_page, True
    else:
        if before is not None:
            query = query.where(key < before.as_sql())
        rows = _first_rows(query, NEWEST_FIRST, per_page + 1)
        items = rows[:per_page]
        more_newer, more_older = before is not None, len(rows) > per_page
    return Page(
        items,
        newer=Cursor.of(items[0]) if items and more_newer else None,
        older=Cursor.of(items[-1]) if items and more_older else None,
    )


def _first_rows(query: Select, order: tuple, count: int) -> list[Post]:
    return list(db.session.scalars(query.order_by(*order).limit(count)))


def timeline_of(user: User) -> Select:
    """Return the user's own posts and those of everyone they follow."""
    followed = select(followers.c.followed_id).where(followers.c.follower_id == user.id)
    return select(Post).where(or_(Post.user_id == user.id, Post.user_id.in_(followed)))


def posts_of(user: User) -> Select:
    """Return the user's posts."""
    return select(Post).where(Post.user_id == user.id)


def all_posts() -> Select:
    """Return every post."""
    return select(Post)
