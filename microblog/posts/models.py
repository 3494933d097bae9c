"""The Post model and the queries that list posts."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Select,
    String,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime

MAX_POST_LENGTH = 280


class Post(db.Model):
    __table_args__ = (
        # A user's posts in order (profiles, exports, the home timeline's merge), and the whole
        # site's in order with the author at hand (explore, the home timeline's walk).
        Index("ix_post_user_id_timestamp", "user_id", "timestamp", "id"),
        Index("ix_post_timestamp_id_user_id", "timestamp", "id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(MAX_POST_LENGTH))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))

    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Post {self.id} by {self.user_id}>"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


class Listing:
    """The posts a query selects, read from an index in (timestamp, id) order."""

    def __init__(self, query: Select) -> None:
        self.query = query

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Post]:
        """Return the first ``count`` posts in that order, past ``beyond`` if given."""
        query = self.query.where(_past(Post, beyond, newest_first))
        return _posts(query.order_by(*key_order(Post, newest_first)).limit(count))


class HomeTimeline(Listing):
    """A user's own posts and those of everyone they follow.

    Selecting them all and sorting costs as much as the followed set has posts: at a million
    posts, tens of milliseconds a page. Two reads that stop early instead:

    1. Walk the newest posts of the whole site in index order, a window of ``WINDOW`` pages'
       worth, and keep the followed set's. When the followed set writes a fair share of the
       site's posts (the usual case), the page is there.
    2. Otherwise (few or quiet followed users, or the end of the list), take each followed
       user's first ``count`` posts from their own index and merge those: bounded by the number
       followed, not by the number of posts.

    Neither depends on how many posts the site holds. Both see a follow at once.
    """

    WINDOW = 20  # pages' worth of the site's newest posts walked before merging

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.followed = select(followers.c.followed_id).where(followers.c.follower_id == user_id)
        super().__init__(select(Post).where(self._authored_by_set(Post.user_id)))

    def _authored_by_set(self, user_id) -> ColumnElement[bool]:
        return or_(user_id == self.user_id, user_id.in_(self.followed))

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Post]:
        posts = _posts_with_ids(self._ids_in_window(count, newest_first, beyond), newest_first)
        if len(posts) < count:
            merged = self._ids_merged(count, newest_first, beyond)
            posts = _posts_with_ids(merged, newest_first)
        return posts

    def _ids_in_window(self, count: int, newest_first: bool, beyond: Cursor | None) -> Select:
        recent = (
            select(Post.id, Post.timestamp, Post.user_id)
            .where(_past(Post, beyond, newest_first))
            .order_by(*key_order(Post, newest_first))
            .limit(count * self.WINDOW)
            .subquery("recent")
        )
        return (
            select(recent.c.id)
            .where(self._authored_by_set(recent.c.user_id))
            .order_by(*key_order(recent.c, newest_first))
            .limit(count)
        )

    def _ids_merged(self, count: int, newest_first: bool, beyond: Cursor | None) -> Select:
        authors = self.followed.union_all(select(literal(self.user_id))).subquery("authors")
        author_id = authors.c.followed_id
        by_author = aliased(Post, name="by_author")
        firsts = (
            select(by_author.id, by_author.timestamp)
            .where(by_author.user_id == author_id, _past(by_author, beyond, newest_first))
            .order_by(*key_order(by_author, newest_first))
            .limit(count)
        )
        if db.session.get_bind().dialect.name == "postgresql":
            merged = firsts.lateral("firsts")
            joined = select(merged.c.id).select_from(authors).join(merged, true())
            return joined.order_by(*key_order(merged.c, newest_first)).limit(count)
        # SQLite has no LATERAL; a correlated IN with its own LIMIT does the same.
        firsts = firsts.with_only_columns(by_author.id).correlate(authors)
        joined = select(Post.id).select_from(authors).join(Post, Post.id.in_(firsts))
        return joined.order_by(*key_order(Post, newest_first)).limit(count)


def key_order(columns, newest_first: bool = True) -> tuple:
    """Return the ORDER BY of posts (or rows with their columns) by (timestamp, id)."""
    if newest_first:
        return columns.timestamp.desc(), columns.id.desc()
    return columns.timestamp.asc(), columns.id.asc()


def _past(columns, cursor: Cursor | None, newest_first: bool) -> ColumnElement[bool]:
    """Return the condition "beyond ``cursor``" in that reading order (true without one)."""
    if cursor is None:
        return true()
    key = tuple_(columns.timestamp, columns.id)
    return key < cursor.as_sql() if newest_first else key > cursor.as_sql()


def _posts(query: Select) -> list[Post]:
    return list(db.session.scalars(query))


def _posts_with_ids(ids: Select, newest_first: bool) -> list[Post]:
    return _posts(select(Post).where(Post.id.in_(ids)).order_by(*key_order(Post, newest_first)))


def page_of(
    listing: Listing, per_page: int, before: Cursor | None = None, after: Cursor | None = None
) -> Page:
    """Return one page of a listing, newest first, by keyset: no OFFSET, no COUNT.

    ``before`` gives the page older than a cursor; ``after`` the page newer than it; neither,
    the newest page. Reading ``per_page + 1`` posts tells whether more lie beyond; on the side
    the reader came from, more lie there by definition.
    """
    if after is not None:
        rows = listing.first(per_page + 1, newest_first=False, beyond=after)
        items = rows[:per_page][::-1]
        more_newer, more_older = len(rows) > per_page, True
    else:
        rows = listing.first(per_page + 1, newest_first=True, beyond=before)
        items = rows[:per_page]
        more_newer, more_older = before is not None, len(rows) > per_page
    return Page(
        items,
        newer=Cursor.of(items[0]) if items and more_newer else None,
        older=Cursor.of(items[-1]) if items and more_older else None,
    )


def timeline_of(user: User) -> HomeTimeline:
    """Return the user's own posts and those of everyone they follow."""
    return HomeTimeline(user.id)


def posts_of(user: User) -> Listing:
    """Return the user's posts."""
    return Listing(select(Post).where(Post.user_id == user.id))


def all_posts() -> Listing:
    """Return every post."""
    return Listing(select(Post))
