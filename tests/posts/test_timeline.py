"""The home timeline's two reads: same posts as its plain definition, plans that stop early."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert

from microblog.auth.models import User, follow, unfollow
from microblog.extensions import db
from microblog.posts.models import Cursor, HomeTimeline, Post, key_order, page_of

PER_PAGE = 5
START = datetime(2024, 1, 1, tzinfo=UTC)


def add(rows: list[tuple[int, int]]) -> None:
    """Insert posts given as (user id, seconds after START), in that order."""
    posts = [
        {
            "body": f"{user}@{second}",
            "user_id": user,
            "timestamp": START + timedelta(seconds=second),
        }
        for user, second in rows
    ]
    db.session.execute(insert(Post), posts)
    db.session.commit()


@pytest.fixture
def people(app, make_user) -> dict[str, int]:
    """A reader who follows a busy and a quiet user, and a stranger nobody follows."""
    ids = {name: make_user(name) for name in ("reader", "busy", "quiet", "stranger")}
    with app.app_context():
        follow(ids["reader"], ids["busy"])
        follow(ids["reader"], ids["quiet"])
        db.session.commit()
    return ids


class Reads:
    """Which of the timeline's two reads ran, seen in the SQL sent to the database."""

    def __init__(self) -> None:
        self.walks = self.merges = 0

    def __call__(self, _conn, _cursor, statement: str, *_args) -> None:
        self.walks += "recent" in statement
        self.merges += "by_author" in statement


def walk(timeline: HomeTimeline) -> tuple[list[int], list[int]]:
    """Page through to the oldest post, then back to the newest; return the ids seen each way."""
    older, page = [], page_of(timeline, PER_PAGE)
    older += [post.id for post in page.items]
    while page.older:
        page = page_of(timeline, PER_PAGE, before=page.older)
        older += [post.id for post in page.items]
    newer = [post.id for post in page.items]
    while page.newer:
        page = page_of(timeline, PER_PAGE, after=page.newer)
        newer = [post.id for post in page.items] + newer
    return older, newer


def test_pages_hold_exactly_the_followed_set_newest_first_by_either_read(app, people):
    busy, quiet, stranger, reader = (people[n] for n in ("busy", "quiet", "stranger", "reader"))
    with app.app_context():
        # Oldest: the followed set writes half the site's posts (the walk finds a page). Then a
        # long run of strangers' posts with one quiet post in it (the walk comes up short and
        # the merge takes over). Newest: four authors sharing one second, twice.
        add([(busy if i % 2 else stranger, i) for i in range(60)])
        add([(quiet if i == 150 else stranger, i) for i in range(60, 300)])
        add([(user, 300 + i // 4) for i in range(8) for user in (reader, busy, quiet, stranger)])
        add([(busy, 310 + i) for i in range(12)])
        timeline = HomeTimeline(reader)
        expected = list(db.session.scalars(timeline.query.order_by(*key_order(Post))))
        reads = Reads()
        event.listen(db.engine, "before_cursor_execute", reads)
        try:
            older, newer = walk(timeline)
        finally:
            event.remove(db.engine, "before_cursor_execute", reads)
    assert older == [post.id for post in expected]
    assert newer == older
    assert reads.walks and reads.merges, "both reads should have served some page"


def test_a_follow_or_unfollow_shows_on_the_next_read(app_context, people):
    add([(people["stranger"], i) for i in range(3)])
    timeline = HomeTimeline(people["reader"])
    assert page_of(timeline, PER_PAGE).items == []
    follow(people["reader"], people["stranger"])
    db.session.commit()
    assert len(page_of(timeline, PER_PAGE).items) == 3
    unfollow(people["reader"], people["stranger"])
    db.session.commit()
    assert page_of(timeline, PER_PAGE).items == []


def plan(statement) -> str:
    """Return the database's plan for a statement, as text."""
    bind = db.session.get_bind()
    compiled = statement.compile(bind)
    if bind.dialect.name == "postgresql":
        rows = db.session.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        return "\n".join(row[0] for row in rows)
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    rows = db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
    depth, lines = {0: -1}, []
    for node, parent, _, detail in rows:  # indented like PostgreSQL's, two spaces a level
        depth[node] = depth[parent] + 1
        lines.append("  " * depth[node] + detail)
    return "\n".join(lines)


@pytest.fixture
def big_site(app, people) -> HomeTimeline:
    """20,000 posts by 200 authors, with statistics gathered: what planners see in production."""
    with app.app_context():
        others = [
            {"username": f"author{n}", "email": f"author{n}@example.com", "password_hash": "-"}
            for n in range(196)
        ]
        authors = list(people.values()) + list(
            db.session.scalars(insert(User).returning(User.id), others)
        )
        add([(authors[i % len(authors)], i) for i in range(20_000)])
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    return HomeTimeline(people["reader"])


@pytest.mark.parametrize("beyond", [None, Cursor(START + timedelta(seconds=10_000), 10_001)])
@pytest.mark.parametrize("newest_first", [True, False])
def test_the_walk_reads_a_window_of_the_sites_posts_in_index_order(
    app, database, big_site, newest_first, beyond
):
    with app.app_context():
        sql = plan(big_site.reads(PER_PAGE + 1, newest_first, beyond)[0])
    # The site's posts in index order with their authors, cut off at the window's end: no
    # table rows read to check an author, no sort of the followed set's posts
    assert "ix_post_user_id_timestamp" not in sql and "Seq Scan on post" not in sql, sql
    if database == "postgresql":
        assert parent_of("using ix_post_timestamp_id_user_id on post", sql) == "Limit", sql
    else:
        walk = "post USING COVERING INDEX ix_post_timestamp_id_user_id"
        assert parent_of(walk, sql) == "CO-ROUTINE recent", sql


@pytest.mark.parametrize("beyond", [None, Cursor(START + timedelta(seconds=10_000), 10_001)])
@pytest.mark.parametrize("newest_first", [True, False])
def test_the_merge_reads_a_bounded_run_of_each_followed_users_posts(
    app, database, big_site, newest_first, beyond
):
    with app.app_context():
        sql = plan(big_site.reads(PER_PAGE + 1, newest_first, beyond)[1])
    # Each author's posts through their own index, cut off at a page; never a scan of all posts
    assert "Seq Scan on post" not in sql and "SCAN post" not in sql, sql
    if database == "postgresql":
        assert (
            parent_of("Index Only Scan Backward using ix_post_user_id_timestamp", sql) == ("Limit")
            or parent_of("Index Only Scan using ix_post_user_id_timestamp", sql) == "Limit"
        ), sql
    else:
        per_author = "SEARCH by_author USING COVERING INDEX ix_post_user_id_timestamp"
        assert parent_of(per_author, sql).startswith("CORRELATED LIST SUBQUERY"), sql


def parent_of(node: str, sql: str) -> str | None:
    """Return the plan node just above the first line that contains ``node``."""
    lines = sql.splitlines()
    depth = lambda line: len(line) - len(line.lstrip(" ->"))  # noqa: E731
    for i, line in enumerate(lines):
        if node in line:
            parents = [p for p in lines[:i] if depth(p) < depth(line)]
            return parents[-1].lstrip(" ->").split("  (")[0] if parents else None
    return None


def test_the_plain_definition_is_what_old_page_links_use(app_context, people):
    # The views answer ?page=N with OFFSET on the plain query; it must select the same set.
    add([(people["busy"], 1), (people["stranger"], 2), (people["reader"], 3)])
    timeline = HomeTimeline(people["reader"])
    selected = db.session.scalars(timeline.query.order_by(*key_order(Post)))
    assert [post.body for post in selected] == [f"{people['reader']}@3", f"{people['busy']}@1"]
