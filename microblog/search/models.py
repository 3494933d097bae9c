"""Finding posts and people, and marking the words found."""

import functools

from markupsafe import Markup, escape
from sqlalchemy import ColumnElement, Select, bindparam, case, func, literal_column, or_, select

from microblog.auth.models import User, canonical
from microblog.extensions import db
from microblog.posts.models import Listing, Post
from microblog.search.index import CONFIGURATIONS, FALLBACK, post_fts, post_vector
from microblog.search.query import Query

PEOPLE_SHOWN = 5

# What the database puts around a matched word before the text is escaped; replaced by <mark>
# after. Control characters: a post cannot contain them (the forms refuse them).
_OPEN, _CLOSE = "\x01", "\x02"


class Matches(Listing):
    """The posts a query finds, newest first, paged by keyset like the timelines."""

    def __init__(self, query: Query) -> None:
        self.search = query
        super().__init__(select(Post).where(_found(query)).params(_parameters(query)))


def _on_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _found(query: Query) -> ColumnElement[bool]:
    if _on_postgresql():
        return post_vector().op("@@")(_tsquery())
    matching = select(post_fts.c.rowid).where(_fts_match())
    return Post.id.in_(matching)


def _parameters(query: Query) -> dict:
    return {"search": query.text if _on_postgresql() else query.fts5()}


def _fts_match() -> ColumnElement[bool]:
    return literal_column(post_fts.name).op("MATCH")(bindparam("search"))


@functools.cache
def _tsquery() -> ColumnElement:
    """The query in every language a post may be indexed in, as one: a post in English matches
    "running" by its stem "run", one in no known language by the word itself."""
    configurations = sorted({FALLBACK, *CONFIGURATIONS.values()})
    queries = [
        func.websearch_to_tsquery(literal_column(f"'{name}'::regconfig"), bindparam("search"))
        for name in configurations
    ]
    return functools.reduce(lambda left, right: left.op("||")(right), queries)


def marked_bodies(query: Query, posts: list[Post]) -> dict[int, Markup]:
    """Return each post's body, escaped, with ``<mark>`` around the words the query found."""
    if not posts:
        return {}
    ids = [post.id for post in posts]
    if _on_postgresql():
        options = f"HighlightAll=true, StartSel={_OPEN}, StopSel={_CLOSE}"
        marked = func.ts_headline(
            func.microblog_ts_config(Post.language), Post.body, _tsquery(), options
        )
        rows: Select = select(Post.id, marked).where(Post.id.in_(ids))
    else:
        marked = func.highlight(literal_column(post_fts.name), 0, _OPEN, _CLOSE)
        rows = select(post_fts.c.rowid, marked).where(_fts_match(), post_fts.c.rowid.in_(ids))
    found = dict(db.session.execute(rows, _parameters(query)).all())
    return {post.id: _marked(found.get(post.id, post.body)) for post in posts}


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
