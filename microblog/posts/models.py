"""Posts, and the lists of posts and of people, paged by keyset."""

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from flask_babel import format_number, ngettext
from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Row,
    Select,
    String,
    bindparam,
    func,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import INTEGER_MAX, UTCDateTime

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
    # ISO 639-1 code detected when the post was written; None when too short to tell, and
    # for posts written before detection. Search reads the post in this language.
    language: Mapped[str | None] = mapped_column(String(5))

    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Post {self.id} by {self.user_id}>"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """A position in a newest-first list of posts: the (timestamp, id) of the post at its edge.

    Written in links as "<microseconds since the epoch>.<id>", ASCII digits only; the id is
    bound to an Integer column, so one past its range names no position.
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
        if not (dot and digits and len(micros) <= 17 and len(post_id) <= 10):
            return None
        if int(post_id) > INTEGER_MAX:  # would be an error on PostgreSQL, not an empty page
            return None
        try:
            return cls(EPOCH + timedelta(microseconds=int(micros)), int(post_id))
        except OverflowError:  # past the year 9999
            return None

    def parameters(self) -> dict:
        """Return the values of the parameters ``beyond_cursor`` compares with."""
        return {"cursor_timestamp": self.timestamp, "cursor_id": self.id}

    def __str__(self) -> str:
        return f"{(self.timestamp - EPOCH) // timedelta(microseconds=1)}.{self.id}"


@dataclass(frozen=True)
class Page:
    """One page of a list: its posts, and where the pages just newer and older begin."""

    items: list  # posts, or people (Follow)
    newer: Cursor | None  # link to the page newer than this one ("after" its first post)
    older: Cursor | None  # link to the page older than this one ("before" its last post)


class Listing:
    """A list read from an index in (timestamp, id) order: here the posts a query selects;
    subclasses read a timeline or a list of people."""

    def __init__(self, query: Select) -> None:
        self.query = query

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Post]:
        """Return the first ``count`` posts in that order, past ``beyond`` if given."""
        query = self.query.where(beyond_cursor(Post, newest_first)) if beyond else self.query
        query = query.order_by(*key_order(Post, newest_first)).limit(bindparam("count"))
        return _posts(query, _parameters(count, beyond))


class HomeTimeline(Listing):
    """A user's own posts and those of everyone they follow.

    Selecting them all and sorting costs as much as the followed set has posts, which grows
    without bound. Two reads that stop early instead:

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
        super().__init__(select(Post).where(_by_followed_set(Post.user_id)).params(user_id=user_id))

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Post]:
        walk, merge = _timeline_reads(newest_first, beyond is not None, _on_postgresql())
        parameters = self._parameters(count, beyond)
        posts = _posts(walk, parameters)
        if len(posts) < count:
            posts = _posts(merge, parameters)
        return posts

    def reads(self, count: int, newest_first: bool, beyond: Cursor | None) -> tuple[Select, ...]:
        """Return the walk and the merge with their parameters bound (to EXPLAIN them)."""
        reads = _timeline_reads(newest_first, beyond is not None, _on_postgresql())
        return tuple(read.params(self._parameters(count, beyond)) for read in reads)

    def _parameters(self, count: int, beyond: Cursor | None) -> dict:
        return _parameters(count, beyond, user_id=self.user_id, window=count * self.WINDOW)


@dataclass(frozen=True)
class Follow:
    """One person in a list of followers or of followed users."""

    user: User
    timestamp: datetime  # when the follow began
    id: int  # the person's user id: with the timestamp, their position in the list


class People(Listing):
    """The followers of a user, or the users they follow; the newest follow first."""

    def __init__(self, user_id: int, followers_of: bool) -> None:
        mine, theirs = (followers.c.follower_id, followers.c.followed_id)
        if followers_of:
            mine, theirs = theirs, mine
        self.key = SimpleNamespace(timestamp=followers.c.created_at, id=theirs)
        super().__init__(
            select(User, followers.c.created_at)
            .join(followers, theirs == User.id)
            .where(mine == user_id)
        )

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Follow]:
        query = self.query.where(beyond_cursor(self.key, newest_first)) if beyond else self.query
        query = query.order_by(*key_order(self.key, newest_first)).limit(bindparam("count"))
        rows = db.session.execute(query, _parameters(count, beyond))
        return [Follow(user, started, user.id) for user, started in rows]


@functools.cache
def _timeline_reads(newest_first: bool, past_cursor: bool, postgresql: bool) -> tuple[Select, ...]:
    """Build the home timeline's two reads once per shape; a request binds only values."""
    order = functools.partial(key_order, newest_first=newest_first)

    def past(columns) -> ColumnElement[bool]:
        return beyond_cursor(columns, newest_first) if past_cursor else true()

    recent = (
        select(Post.id, Post.timestamp, Post.user_id)
        .where(past(Post))
        .order_by(*order(Post))
        .limit(bindparam("window"))
        .subquery("recent")
    )
    walk = (
        select(recent.c.id)
        .where(_by_followed_set(recent.c.user_id))
        .order_by(*order(recent.c))
        .limit(bindparam("count"))
    )

    user_id = bindparam("user_id", type_=followers.c.followed_id.type)
    authors = _followed().union_all(select(user_id)).subquery("authors")
    by_author = aliased(Post, name="by_author")
    firsts = (
        select(by_author.id, by_author.timestamp)
        .where(by_author.user_id == authors.c.followed_id, past(by_author))
        .order_by(*order(by_author))
        .limit(bindparam("count"))
    )
    if postgresql:
        firsts = firsts.lateral("firsts")
        merge = (
            select(firsts.c.id).select_from(authors).join(firsts, true()).order_by(*order(firsts.c))
        )
    else:  # SQLite has no LATERAL; a correlated IN with its own LIMIT does the same
        firsts = firsts.with_only_columns(by_author.id).correlate(authors)
        merge = (
            select(Post.id)
            .select_from(authors)
            .join(Post, Post.id.in_(firsts))
            .order_by(*order(Post))
        )
    merge = merge.limit(bindparam("count"))

    return tuple(
        select(Post).where(Post.id.in_(ids)).order_by(*order(Post)) for ids in (walk, merge)
    )


def _followed() -> Select:
    return select(followers.c.followed_id).where(followers.c.follower_id == bindparam("user_id"))


def _by_followed_set(author_id) -> ColumnElement[bool]:
    """Return "written by the user (parameter ``user_id``) or by someone they follow"."""
    return or_(author_id == bindparam("user_id"), author_id.in_(_followed()))


def _on_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def key_order(columns, newest_first: bool = True) -> tuple:
    """Return the ORDER BY of posts (or rows with their columns) by (timestamp, id)."""
    if newest_first:
        return columns.timestamp.desc(), columns.id.desc()
    return columns.timestamp.asc(), columns.id.asc()


def beyond_cursor(columns, newest_first: bool) -> ColumnElement[bool]:
    """Return "beyond the cursor in that reading order", the cursor bound by its parameters().

    A row value, which both databases read as one range of a (timestamp, id) index.
    """
    key = tuple_(columns.timestamp, columns.id)
    cursor = tuple_(
        bindparam("cursor_timestamp", type_=Post.timestamp.type),
        bindparam("cursor_id", type_=Post.id.type),
    )
    return key < cursor if newest_first else key > cursor


def _parameters(count: int, beyond: Cursor | None, **others) -> dict:
    return {"count": count, **(beyond.parameters() if beyond else {}), **others}


def _posts(query: Select, parameters: dict) -> list[Post]:
    return list(db.session.scalars(query, parameters))


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


def followers_of(user: User) -> People:
    """Return the people who follow the user."""
    return People(user.id, followers_of=True)


def followed_by(user: User) -> People:
    """Return the people the user follows."""
    return People(user.id, followers_of=False)


def timeline_of(user: User) -> HomeTimeline:
    """Return the user's own posts and those of everyone they follow."""
    return HomeTimeline(user.id)


def posts_of(user: User) -> Listing:
    """Return the user's posts."""
    return Listing(select(Post).where(Post.user_id == user.id))


def all_posts() -> Listing:
    """Return every post."""
    return Listing(select(Post))


# How many of the site's newest posts the suggestions of people to follow walk: a bounded
# read of one index, whatever the size of the site.
SUGGESTION_WINDOW = 500


def follows_anyone(user_id: int) -> bool:
    query = select(followers.c.followed_id).where(followers.c.follower_id == user_id)
    return db.session.scalar(select(query.exists()))


def people_to_follow(user_id: int, count: int = 5) -> list[User]:
    """Suggest whom a user might follow: the authors of the site's newest posts, the most
    recent first, but for the user and those they follow already."""
    recent = (
        select(Post.user_id, Post.timestamp)
        .order_by(*key_order(Post))
        .limit(SUGGESTION_WINDOW)
        .subquery()
    )
    followed = select(followers.c.followed_id).where(followers.c.follower_id == user_id)
    authors = (
        select(recent.c.user_id)
        .where(recent.c.user_id != user_id, recent.c.user_id.not_in(followed))
        .group_by(recent.c.user_id)
        .order_by(func.max(recent.c.timestamp).desc(), recent.c.user_id)
        .limit(count)
    )
    ids = list(db.session.scalars(authors))
    found = {user.id: user for user in db.session.scalars(select(User).where(User.id.in_(ids)))}
    return [found[user_id] for user_id in ids]


READ_CHUNK = 1000


def count_posts(user_id: int) -> int:
    return db.session.scalar(select(func.count()).where(Post.user_id == user_id))


def posts_done(done: int, total: int) -> str:
    """Say how far a job over a user's posts is, in the current language: "51 of 300 posts"
    (the ``counts`` of the job types that read them with :func:`post_rows`)."""
    return ngettext("%(done)s of %(total)s post", "%(done)s of %(total)s posts", total,
                    done=format_number(done), total=format_number(total))  # fmt: skip


def post_rows(user_id: int, chunk: int = READ_CHUNK) -> Iterator[list[Row]]:
    """Yield the user's posts oldest first, ``chunk`` rows at a time.

    Each chunk starts past the last one's (timestamp, id): one range of the user's index, so
    a chunk costs the same at the millionth post as at the first.
    """
    first = (
        select(Post.id, Post.timestamp, Post.body)
        .where(Post.user_id == user_id)
        .order_by(*key_order(Post, newest_first=False))
        .limit(chunk)
    )
    following = first.where(beyond_cursor(Post, newest_first=False))
    rows = db.session.execute(first).all()
    while rows:
        yield rows
        if len(rows) < chunk:
            return
        last = Cursor(rows[-1].timestamp, rows[-1].id)
        rows = db.session.execute(following, last.parameters()).all()
