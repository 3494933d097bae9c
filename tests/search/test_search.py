"""Search: posts found by their words the moment they are committed, whatever wrote them, and
gone with them; people by name; every query safe."""

import re
from datetime import UTC, datetime

import pytest
from flask_migrate import upgrade
from sqlalchemy import delete, func, select, text, update

from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.posts.models import Post, page_of
from microblog.search.models import Matches, SearchTooLong, time_budget
from microblog.search.query import parse
from tests.support.data import insert_posts


@pytest.fixture
def alice(client, auth, make_user):
    """A client signed in as alice."""
    auth.signed_in("alice")
    return client


def results(client, query: str, **args) -> list[str]:
    """Return the bodies of the posts a search shows, tags and all."""
    response = client.get("/search", query_string={"q": query, **args})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    page = response.get_data(as_text=True)
    return re.findall(r'<p class="mb-0 post-body">(.*?)</p>', page, re.S)


def plain(bodies: list[str]) -> list[str]:
    return [body.replace("<mark>", "").replace("</mark>", "") for body in bodies]


def user_id(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def test_a_post_is_found_by_any_of_its_words_as_soon_as_it_is_posted(app, alice):
    posted = alice.post("/", data={"post": "Kayaking on the fjord <b>today</b>"})
    assert posted.status_code == 302
    for word in ("kayaking", "FJORD", "today"):
        found = results(alice, word)
        assert plain(found) == ["Kayaking on the fjord &lt;b&gt;today&lt;/b&gt;"], word
    # the words found are marked, the rest escaped
    assert results(alice, "fjord") == [
        "Kayaking on the <mark>fjord</mark> &lt;b&gt;today&lt;/b&gt;"
    ]
    assert results(alice, "skiing") == []


def test_the_language_is_detected_when_posting_and_english_words_match_by_their_stem(app, alice):
    alice.post("/", data={"post": "The children were running along the beaches all morning"})
    alice.post("/", data={"post": "Hoy los niños corren por la playa toda la mañana"})
    alice.post("/", data={"post": "ok"})
    with app.app_context():
        languages = db.session.scalars(select(Post.language).order_by(Post.id)).all()
    assert languages == ["en", "es", None]
    # "run" finds "running", "beach" finds "beaches": on PostgreSQL by the post's English
    # configuration, on SQLite by the Porter stemmer
    assert plain(results(alice, "run beach")) == [
        "The children were running along the beaches all morning"
    ]


def test_whatever_writes_a_post_the_index_follows_it_and_forgets_it_with_its_author(app, alice):
    # Given posts written by a bulk insert and by hand-written SQL, not by the app
    bob = User(username="bob", email="bob@example.com")
    with app.app_context():
        bob.set_password("correct-horse-9")
        db.session.add(bob)
        db.session.commit()
        insert_posts(bob.id, ["a walrus on the ice", "an albatross at sea"])
        db.session.execute(
            text("INSERT INTO post (body, timestamp, user_id) VALUES (:body, :at, :user)"),
            {"body": "a narwhal in the bay", "at": datetime(2025, 1, 1, tzinfo=UTC),
             "user": bob.id},
        )  # fmt: skip
        db.session.commit()
    assert plain(results(alice, "walrus")) == ["a walrus on the ice"]
    assert plain(results(alice, "narwhal")) == ["a narwhal in the bay"]
    # When a body is rewritten in SQL, the old words are gone and the new ones found
    with app.app_context():
        db.session.execute(update(Post).where(Post.body.contains("albatross"))
                           .values(body="a puffin at sea"))  # fmt: skip
        db.session.commit()
    assert results(alice, "albatross") == []
    assert plain(results(alice, "puffin")) == ["a puffin at sea"]
    # When the author is deleted (the posts go by the foreign key's cascade), nothing is found
    with app.app_context():
        db.session.execute(delete(User).where(User.username == "bob"))
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Post)) == 0
    for word in ("walrus", "narwhal", "puffin", "sea"):
        assert results(alice, word) == [], word


def test_quotes_or_and_minus_read_as_on_web_search_engines(app, alice):
    alice_id = user_id(app, "alice")
    with app.app_context():
        insert_posts(alice_id, ["red apple pie", "apple red wine", "green apple", "blue sky"])
    assert plain(results(alice, '"red apple"')) == ["red apple pie"]
    assert plain(results(alice, "apple -red")) == ["green apple"]
    assert plain(results(alice, "sky or pie")) == ["blue sky", "red apple pie"]
    assert plain(results(alice, "apple")) == ["green apple", "apple red wine", "red apple pie"]


def test_results_page_newest_first_by_cursor_and_keep_the_query(app, alice):
    alice_id = user_id(app, "alice")
    with app.app_context():
        insert_posts(alice_id, [f"otter number {i}" for i in range(7)] + ["unrelated"])
    page = alice.get("/search?q=otter").get_data(as_text=True)
    assert plain(re.findall(r'post-body">(.*?)</p>', page)) == [
        f"otter number {i}" for i in (6, 5, 4, 3, 2)
    ]
    older = re.search(r'rel="next" href="([^"]+)"', page)[1].replace("&amp;", "&")
    assert "q=otter" in older and "before=" in older and "page=" not in older
    page = alice.get(older).get_data(as_text=True)
    assert plain(re.findall(r'post-body">(.*?)</p>', page)) == ["otter number 1", "otter number 0"]
    newer = re.search(r'rel="prev" href="([^"]+)"', page)[1].replace("&amp;", "&")
    page = alice.get(newer).get_data(as_text=True)
    assert plain(re.findall(r'post-body">(.*?)</p>', page))[0] == "otter number 6"


def test_people_whose_name_starts_with_the_query_come_first_in_any_case(app, alice, make_user):
    for name in ("Marina", "submarine", "mariner", "Bob_"):
        make_user(name)
    page = alice.get("/search?q=MARIN").get_data(as_text=True)
    section = page.split('id="people-heading"')[1].split("</section>")[0]
    assert re.findall(r'class="fw-semibold user-link"[^>]*>([^<]+)<', section) == [
        "Marina", "mariner", "submarine",
    ]  # fmt: skip
    # LIKE's wildcards are text here: "%" and "_" match only themselves
    for query, names in (("%", []), ("_", ["Bob_"]), ("b_", ["Bob_"])):
        page = alice.get("/search", query_string={"q": query}).get_data(as_text=True)
        found = re.findall(r'person">\s*<span[^>]*>[^<]*</span>\s*<a[^>]*>([^<]+)<', page)
        assert found == names, query


@pytest.mark.parametrize(
    "query",
    [
        "", " ", "a", "the", "the and of", "\"", "\"unbalanced", "(", ")", "((a", "a*", "*",
        "NEAR(a b)", "a AND OR NOT b", "body:a", "^a", "-", "--a", "-a", "or", "OR or",
        "a:*", "!a", "a & b | !c", "<->", "'; DROP TABLE post; --", "\\", "%", "\u200b",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "日本語", "ﷺ", "\x01\x02", "x" * 200,
    ],
)  # fmt: skip
def test_no_query_is_an_error(app, alice, query):
    alice_id = user_id(app, "alice")
    with app.app_context():
        insert_posts(alice_id, ["a body with a few words", "日本語 のテキスト"])
    response = alice.get("/search", query_string={"q": query})
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]


def test_an_over_long_query_is_400_with_a_message(alice):
    response = alice.get("/search", query_string={"q": "x" * 201})
    assert response.status_code == 400
    assert "Keep searches to 200 characters." in response.get_data(as_text=True)
    response = alice.get("/search", query_string={"q": "x" * 10_000})
    assert response.status_code == 400


def test_searches_are_throttled_per_client_with_a_clear_429(make_app, make_user):
    app = make_app(THROTTLE_ENABLED=True, SEARCH_LIMIT_PER_CLIENT="3 per minute")
    make_user("alice")
    client = app.test_client()
    client.post("/auth/login", data={"username": "alice", "password": "correct-horse-9"})
    assert client.get("/search").status_code == 200  # the empty form costs nothing
    answers = [client.get(f"/search?q=word{n}") for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "Too many attempts" in answers[3].get_data(as_text=True)
    assert answers[3].headers["Retry-After"]


def test_search_needs_a_sign_in(client):
    response = client.get("/search?q=hello")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_navigation_bar_searches_and_keeps_the_query(alice):
    page = alice.get("/explore").get_data(as_text=True)
    assert 'action="/search"' in page and 'role="search"' in page
    page = alice.get("/search?q=otters").get_data(as_text=True)
    assert 'id="nav-search" name="q" placeholder="Search"\n               value="otters"' in page


def test_only_terms_to_find_reach_fts5_and_every_one_is_quoted():
    query = parse('"red apple" or pie -crust NEAR( body:x* "un"balanced')
    assert query.fts5() == (
        '("red apple") OR (("pie" AND "NEAR(" AND "body:x*" AND "un" AND "balanced") NOT ("crust"))'
    )
    assert not parse("-only -exclusions").finds_anything
    assert not parse("!!! ... ---").finds_anything


def test_the_migration_indexes_the_posts_that_exist_before_it(database, databases, tmp_path):
    # Given a database at the revision before search, holding posts
    url = databases.empty(database, tmp_path)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="0016")
        db.session.execute(text(
            "INSERT INTO \"user\" (username, username_key, email, password_hash, last_seen, "
            "is_admin, unread_messages) VALUES ('ann', 'ann', 'ann@example.com', 'x', "
            ":now, false, 0)"
        ), {"now": datetime.now(UTC)})  # fmt: skip
        db.session.execute(text(
            "INSERT INTO post (body, timestamp, user_id) SELECT 'an old heron', :now, id "
            "FROM \"user\""
        ), {"now": datetime.now(UTC)})  # fmt: skip
        db.session.commit()
        # When it is upgraded, the posts are found
        upgrade()
        found = page_of(Matches(parse("heron")), 5).items
        assert [post.body for post in found] == ["an old heron"]
        db.session.remove()
        db.engine.dispose()
    databases.drop(url)


def test_a_search_past_its_time_budget_is_stopped_and_the_session_goes_on(app, make_user):
    alice_id = make_user("alice")
    everything = text("SELECT count(*) FROM post AS a, post AS b, post AS c")
    with app.app_context():
        insert_posts(alice_id, [f"post {i}" for i in range(300)])
        with pytest.raises(SearchTooLong):
            with time_budget(1):
                db.session.execute(everything).scalar()  # 27 million rows
        # the session works, and what follows the search has no such limit
        with time_budget(1_000):
            assert db.session.scalar(select(func.count()).select_from(Post)) == 300
        assert (
            db.session.execute(text("SELECT count(*) FROM post AS a, post AS b")).scalar() == 90_000
        )


def test_a_search_too_broad_for_its_budget_gets_a_page_saying_so(app, alice, database):
    app.config["SEARCH_TIMEOUT_MS"] = 0  # PostgreSQL: 1 ms; SQLite: stopped at once
    alice_id = user_id(app, "alice")
    with app.app_context():
        insert_posts(alice_id, [f"walrus number {i}" for i in range(10_000)])
    # PostgreSQL's limit is per statement: one that matches nothing, slowly; SQLite's handler
    # counts the steps of its own statements: any that reads posts.
    query = "walrus" if database == "sqlite" else "walrus -number or walrus -walrus"
    response = alice.get("/search", query_string={"q": query})
    page = response.get_data(as_text=True)
    assert response.status_code == 400, page[:300]
    assert "This search took too long" in page


def test_a_search_migration_cut_off_half_way_finishes_when_run_again(database, databases, tmp_path):
    # Given a database whose search migration ran, but was cut off before it was recorded
    # (and, on PostgreSQL, before its index was built)
    url = databases.empty(database, tmp_path)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="0017")
        if database == "postgresql":
            db.session.execute(text("DROP INDEX ix_post_search"))
        db.session.execute(text("UPDATE alembic_version SET version_num = '0016'"))
        db.session.commit()
        # When it runs again, it finishes, and search works
        upgrade(revision="0017")
        assert db.session.scalar(text("SELECT version_num FROM alembic_version")) == "0017"
        upgrade()  # and the revisions after it, which the models need
        user = User(username="ann", email="ann@example.com")
        user.set_password("correct-horse-9")
        db.session.add(user)
        db.session.commit()
        insert_posts(user.id, ["a heron at dawn"])
        assert [post.body for post in page_of(Matches(parse("heron")), 5).items] == [
            "a heron at dawn"
        ]
        db.session.remove()
        db.engine.dispose()
    databases.drop(url)


def test_matches_are_found_both_among_the_newest_posts_and_far_behind_them(app, alice):
    # Given a match written first, then more posts than PostgreSQL's walk reads, then matches
    alice_id = user_id(app, "alice")
    behind = Matches.WINDOW * (app.config["POSTS_PER_PAGE"] + 1) + 100
    with app.app_context():
        insert_posts(alice_id, ["an old albatross"] + ["filler"] * behind + [
            f"a new albatross {i}" for i in range(3)
        ])  # fmt: skip
    # Then the first page has all four, newest first: three from the walk, one from the index
    assert plain(results(alice, "albatross")) == [
        "a new albatross 2", "a new albatross 1", "a new albatross 0", "an old albatross",
    ]  # fmt: skip
