"""Finding posts and people, and marking the words found."""

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager

from markupsafe import Markup, escape
from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.exc import OperationalError

from microblog.auth.models import User, canonical
from microblog.extensions import db
from microblog.posts.models import Cursor, Listing, Post
from microblog.search.index import CONFIGURATIONS, FALLBACK, post_fts, search_vector
from microblog.search.query import Query

PEOPLE_SHOWN = 5
QUERY_CANCELED_SQLSTATE = "57014"  # PostgreSQL ended the statement at its timeout


class SearchTooLong(Exception):
    """The search ran past its time budget and was stopped."""


@contextmanager
def time_budget(milliseconds: int) -> Iterator[None]:
    """Stop the database's work on a search after ``milliseconds``: raise SearchTooLong.

    PostgreSQL cancels the statement (a statement timeout for this transaction only); SQLite
    interrupts it from its progress handler. Any other database error passes through.
    """
    if _on_postgresql():
        # (0 would mean no limit at all)
        limit = {"ms": str(max(1, milliseconds))}
        db.session.execute(text("SELECT set_config('statement_timeout', :ms, true)"), limit)
        try:
            yield
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != QUERY_CANCELED_SQLSTATE:
                raise
            db.session.rollback()
            raise SearchTooLong from error
        db.session.execute(text("RESET statement_timeout"))
        return
    connection = db.session.connection().connection.driver_connection
    deadline = time.monotonic() + milliseconds / 1000
    connection.set_progress_handler(lambda: time.monotonic() > deadline, 100)
    try:
        yield
    except OperationalError as error:
        if str(error.orig) != "interrupted":
            raise
        db.session.rollback()
        raise SearchTooLong from error
    finally:
        connection.set_progress_handler(None, 0)


# What the database puts around a matched word before the text is escaped; replaced by <mark>
# after. Control characters: a post cannot contain them (the forms refuse them).
_OPEN, _CLOSE = "\x01", "\x02"
_HEADLINE = f"HighlightAll=true, StartSel={_OPEN}, StopSel={_CLOSE}"


class Matches(Listing):
    """The posts a query finds, newest first, paged by keyset like the timelines.

    Newest first in the order posts were written (their ids), which for every post the app
    writes is their time order: both indexes hand matches out in that order (FTS5's doclists
    are sorted by rowid; PostgreSQL walks the primary key backwards, reading each post's stored
    words, when matches are common), so a page costs about the same however many posts match.
    Posts bulk-imported with older timestamps sort by when they were imported.
    """

    WINDOW = 200  # pages' worth of the newest posts walked on PostgreSQL before the index

    def __init__(self, query: Query) -> None:
        self.parameters = _parameters(query)
        self.marked: dict[int, Markup] = {}  # each post read: its body with the words marked
        super().__init__(select(Post))

    @property
    def finds_anything(self) -> bool:
        return bool(self.parameters["search"])

    def first(self, count: int, newest_first: bool, beyond: Cursor | None) -> list[Post]:
        if not self.finds_anything:
            return []
        parameters = {**self.parameters, "count": count, "window": count * self.WINDOW}
        if beyond:
            parameters["cursor_id"] = beyond.id
        order = Post.id.desc() if newest_first else Post.id.asc()
        # The page's posts, their words marked by the database: for these rows only.
        if _on_postgresql():
            walk, index = _postgresql_reads(newest_first, beyond is not None)
            ids = db.session.scalars(walk, parameters).all()
            if len(ids) < count:
                ids = db.session.scalars(index, parameters).all()
            configuration = func.microblog_ts_config(Post.language)
            marked = func.ts_headline(configuration, Post.body, _tsquery(), _HEADLINE)
            query = select(Post, marked).where(Post.id.in_(ids)).order_by(order)
            rows = db.session.execute(query, parameters).all()
        else:
            found = _sqlite_read(newest_first, beyond is not None)
            hits = dict(db.session.execute(found, parameters).all())
            query = select(Post).where(Post.id.in_(list(hits))).order_by(order)
            rows = [(post, hits[post.id]) for post in db.session.scalars(query)]
        self.marked.update((post.id, _marked(text)) for post, text in rows)
        return [post for post, _ in rows]


def _past_cursor(key, newest_first: bool) -> ColumnElement[bool]:
    cursor = bindparam("cursor_id", type_=Post.id.type)
    return key < cursor if newest_first else key > cursor


@functools.cache
def _postgresql_reads(newest_first: bool, past_cursor: bool) -> tuple[Select, Select]:
    """The two reads of a page on PostgreSQL, built once per shape; a request binds values.

    1. Walk the newest posts (past the cursor) along the primary key, ``WINDOW`` pages' worth,
       reading each one's stored words: when matches are common, the page is there, whatever
       the planner guesses (it guesses two words that go together, a phrase, as rare).
    2. Otherwise the GIN index: every match, sorted; few, since the walk found few.
    """
    key_order = Post.id.desc() if newest_first else Post.id.asc()
    recent = select(Post.id, search_vector.label("words"))
    if past_cursor:
        recent = recent.where(_past_cursor(Post.id, newest_first))
    recent = recent.order_by(key_order).limit(bindparam("window")).subquery("recent")
    walk = (
        select(recent.c.id)
        .where(recent.c.words.op("@@")(_tsquery()))
        .order_by(recent.c.id.desc() if newest_first else recent.c.id.asc())
        .limit(bindparam("count"))
    )
    index = select(Post.id).where(_tsquery_match())
    if past_cursor:
        index = index.where(_past_cursor(Post.id, newest_first))
    return walk, index.order_by(key_order).limit(bindparam("count"))


@functools.cache
def _sqlite_read(newest_first: bool, past_cursor: bool) -> Select:
    """The read of a page on SQLite: FTS5 hands matches out in rowid order, and stops."""
    rowid = post_fts.c.rowid
    marked = func.highlight(literal_column(post_fts.name), 0, _OPEN, _CLOSE)
    found = select(rowid, marked).where(_fts_match())
    if past_cursor:
        found = found.where(_past_cursor(rowid, newest_first))
    return found.order_by(rowid.desc() if newest_first else rowid.asc()).limit(bindparam("count"))


def _on_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _parameters(query: Query) -> dict:
    """Return the query as the database's search takes it ("" when it can find nothing)."""
    if not query.finds_anything:
        return {"search": ""}
    if not _on_postgresql():
        return {"search": query.fts5()}
    readings = {"text": query.text, "configurations": _CONFIGURATIONS}
    return {"search": db.session.scalar(_TSQUERY, readings)}


def _fts_match() -> ColumnElement[bool]:
    return literal_column(post_fts.name).op("MATCH")(bindparam("search"))


def _tsquery() -> ColumnElement:
    return cast(bindparam("search"), TSQUERY)


def _tsquery_match() -> ColumnElement[bool]:
    return search_vector.op("@@")(_tsquery())


# The query read in every language a post may be indexed in (a post in English matches
# "running" by its stem "run", one in no known language by the word itself), each distinct
# reading once: the planner then weighs the real words, and picks the index for rare ones.
_CONFIGURATIONS = sorted({FALLBACK, *CONFIGURATIONS.values()})
_TSQUERY = text(
    "SELECT coalesce(string_agg(DISTINCT '(' || reading::text || ')', ' | '), '') FROM ("
    "SELECT websearch_to_tsquery(configuration::regconfig, :text) AS reading"
    " FROM unnest(CAST(:configurations AS text[])) AS configuration) AS readings"
    " WHERE numnode(reading) > 0"
)


def _marked(text: str) -> Markup:
    """Escape ``text`` and turn the database's markers into ``<mark>`` elements."""
    html, inside = [], False
    for part in text.replace(_CLOSE, _OPEN).split(_OPEN):
        if part:
            html.append(Markup("<mark>{}</mark>").format(part) if inside else escape(part))
        inside = not inside
    return Markup("").join(html)


def people(text: str) -> list[User]:
    """Return a few users whose name starts with, or else contains, the text (in any case)."""
    key = _escape_like(canonical(text.strip()))
    if not key:
        return []
    starts = User.username_key.like(f"{key}%", escape="\\")
    query = (
        select(User)
        .where(or_(starts, User.username_key.like(f"%{key}%", escape="\\")))
        .order_by(case((starts, 0), else_=1), User.username_key)
        .limit(PEOPLE_SHOWN)
    )
    return list(db.session.scalars(query))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
