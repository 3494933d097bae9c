"""Writing posts, timelines, explore, profiles and following."""

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.models import utcnow
from microblog.posts.models import MAX_POST_LENGTH, Post
from tests.support.web import PASSWORD


@pytest.fixture
def add_posts(app):
    """Add posts by ``username`` with strictly increasing timestamps."""

    def add(username: str, *bodies: str) -> None:
        with app.app_context():
            user = db.session.scalar(select(User).where(User.username == username))
            start = utcnow() - timedelta(days=1)
            count = db.session.scalar(select(func.count(Post.id)))
            for i, body in enumerate(bodies, start=count):
                db.session.add(Post(body=body, author=user, timestamp=start + timedelta(seconds=i)))
            db.session.commit()

    return add


def post_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Post.id)))


def test_writing_a_post_publishes_it_on_the_timeline(client, auth, app):
    auth.signed_in("alice")
    response = client.post("/", data={"post": "  hello <b>world</b>  "}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Your post is now live!" in html
    assert "hello &lt;b&gt;world&lt;/b&gt;" in html
    assert post_count(app) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [("", "A post cannot be empty."), ("   ", "A post cannot be empty."),
     ("x" * (MAX_POST_LENGTH + 1), f"Keep posts to {MAX_POST_LENGTH} characters.")],
)  # fmt: skip
def test_bad_posts_are_refused_with_a_message(client, auth, app, body, message):
    auth.signed_in("alice")
    response = client.post("/", data={"post": body})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert post_count(app) == 0


def test_timeline_shows_own_and_followed_posts_newest_first(client, auth, make_user, add_posts):
    auth.signed_in("alice")
    make_user("bob")
    make_user("carol")
    add_posts("alice", "alice-old")
    add_posts("bob", "bob-post")
    add_posts("carol", "carol-post")
    add_posts("alice", "alice-new")
    client.post("/follow/bob")
    html = client.get("/").get_data(as_text=True)
    assert "carol-post" not in html
    assert html.index("alice-new") < html.index("bob-post") < html.index("alice-old")


def bodies(html: str) -> list[str]:
    return re.findall(r'<p class="mb-0 post-body">([^<]*)</p>', html)


def link(html: str, rel: str) -> str | None:
    """Return the pager's link with this ``rel`` ("next" is older, "prev" newer), unescaped."""
    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_timeline_pages_go_older_and_newer_by_cursor(client, auth, add_posts):
    # Given 12 posts, 5 a page in tests
    auth.signed_in("alice")
    add_posts("alice", *[f"post-{i:02d}" for i in range(12)])
    # When the pages are walked older, then back newer
    first = client.get("/").get_data(as_text=True)
    second = client.get(link(first, "next")).get_data(as_text=True)
    last = client.get(link(second, "next")).get_data(as_text=True)
    back = client.get(link(last, "prev")).get_data(as_text=True)
    # Then each page holds the right posts, newest first, with links only where more lie
    assert bodies(first) == [f"post-{i:02d}" for i in range(11, 6, -1)]
    assert bodies(second) == [f"post-{i:02d}" for i in range(6, 1, -1)]
    assert bodies(last) == ["post-01", "post-00"]
    assert bodies(back) == bodies(second)
    assert link(first, "prev") is None and link(last, "next") is None
    assert "?before=" in link(first, "next") and "page=" not in first


def test_pages_split_posts_with_equal_timestamps_without_losing_or_repeating_any(client, auth, app):
    # Given 13 posts that all share one timestamp
    alice = auth.signed_in("alice")
    with app.app_context():
        moment = utcnow() - timedelta(hours=1)
        for i in range(13):
            db.session.add(Post(body=f"same-{i:02d}", user_id=alice, timestamp=moment))
        db.session.commit()
    # When every page is walked
    seen, html = [], client.get("/").get_data(as_text=True)
    while True:
        seen += bodies(html)
        if link(html, "next") is None:
            break
        html = client.get(link(html, "next")).get_data(as_text=True)
    # Then each post appears once, newest (highest id) first
    assert seen == [f"same-{i:02d}" for i in range(12, -1, -1)]


def test_a_post_arriving_between_two_page_loads_shifts_nothing(client, auth, add_posts):
    auth.signed_in("alice")
    add_posts("alice", *[f"post-{i:02d}" for i in range(8)])
    first = client.get("/").get_data(as_text=True)
    client.post("/", data={"post": "brand new"})
    older = client.get(link(first, "next")).get_data(as_text=True)
    assert bodies(older) == ["post-02", "post-01", "post-00"]  # no repeat of the first page
    assert bodies(client.get("/").get_data(as_text=True))[0] == "brand new"


@pytest.mark.parametrize("path", ["/explore", "/user/alice"])
def test_old_page_number_links_redirect_to_their_cursor(client, auth, add_posts, path):
    auth.signed_in("alice")
    add_posts("alice", *[f"post-{i:02d}" for i in range(12)])
    third = client.get(f"{path}?page=3")
    assert third.status_code == 301 and "before=" in third.headers["Location"]
    assert bodies(client.get(third.headers["Location"]).get_data(as_text=True)) == [
        "post-01", "post-00"
    ]  # fmt: skip
    assert client.get(f"{path}?page=1").headers["Location"] == path
    assert client.get(f"{path}?page=99").status_code == 404


def test_old_page_number_links_to_the_home_timeline_open_its_newest_page(client, auth, add_posts):
    # Its pages shift with every post, and finding page N would sort the whole followed set.
    auth.signed_in("alice")
    add_posts("alice", *[f"post-{i:02d}" for i in range(12)])
    for number in ("1", "3", "99"):
        response = client.get(f"/?page={number}")
        assert response.status_code == 301 and response.headers["Location"] == "/"


@pytest.mark.parametrize("path", ["/", "/explore", "/user/alice"])
@pytest.mark.parametrize("page", ["abc", "-1", "0", "1001", "922337203685477580", "١٢", "1e3"])
def test_page_numbers_that_cannot_exist_are_404(client, auth, path, page):
    auth.signed_in("alice")
    assert client.get(f"{path}?page={page}").status_code == 404


@pytest.mark.parametrize("path", ["/", "/explore", "/user/alice"])
@pytest.mark.parametrize(
    "query", ["before=abc", "after=1.2.3", "before=.5", "before=١.٢", "before=1.2&after=1.2",
              "after=-5.1", "before=" + "9" * 30 + ".1"],
)  # fmt: skip
def test_cursors_that_cannot_exist_are_404(client, auth, path, query):
    auth.signed_in("alice")
    assert client.get(f"{path}?{query}").status_code == 404


def test_explore_shows_everyones_posts(client, auth, make_user, add_posts):
    auth.signed_in("alice")
    make_user("bob")
    add_posts("bob", "bob-post")
    assert "bob-post" in client.get("/explore").get_data(as_text=True)


def test_profile_shows_about_me_posts_and_follow_button(client, auth, make_user, add_posts):
    auth.signed_in("alice")
    make_user("bob")
    add_posts("bob", "bob-post")
    html = client.get("/user/bob").get_data(as_text=True)
    assert "bob-post" in html
    assert 'action="/follow/bob"' in html
    assert "Last seen" in html


def test_profile_posts_are_paginated(client, auth, make_user, add_posts):
    auth.signed_in("alice")
    make_user("bob")
    add_posts("bob", *[f"bob-{i:02d}" for i in range(7)])
    first = client.get("/user/bob").get_data(as_text=True)
    assert link(first, "next").startswith("/user/bob?before=")
    second = client.get(link(first, "next")).get_data(as_text=True)
    assert bodies(first) == [f"bob-{i:02d}" for i in range(6, 1, -1)]
    assert bodies(second) == ["bob-01", "bob-00"]


def test_unknown_profile_is_404(client, auth):
    auth.signed_in("alice")
    assert client.get("/user/nobody").status_code == 404


def test_follow_and_unfollow_change_the_relation(client, auth, make_user, app):
    alice_id = auth.signed_in("alice")
    make_user("bob")
    client.post("/follow/bob")
    with app.app_context():
        assert [u.username for u in db.session.get(User, alice_id).following] == ["bob"]
    assert 'action="/unfollow/bob"' in client.get("/user/bob").get_data(as_text=True)
    client.post("/unfollow/bob")
    with app.app_context():
        assert db.session.get(User, alice_id).following == []


@pytest.mark.parametrize("path", ["/follow/bob", "/unfollow/bob"])
def test_follow_buttons_are_post_only(client, auth, make_user, path):
    auth.signed_in("alice")
    make_user("bob")
    assert client.get(path).status_code == 405


def test_following_yourself_is_refused(client, auth, app):
    alice_id = auth.signed_in("alice")
    response = client.post("/follow/alice", follow_redirects=True)
    assert "You cannot follow yourself." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, alice_id).following == []


def test_following_an_unknown_user_is_404(client, auth):
    auth.signed_in("alice")
    assert client.post("/follow/nobody").status_code == 404


def test_edit_profile_changes_own_name_and_about(client, auth, app):
    alice_id = auth.signed_in("alice")
    response = client.post("/edit_profile", data={"username": "alicia", "about_me": "Hi there"})
    assert response.headers["Location"] == "/user/alicia"
    with app.app_context():
        user = db.session.get(User, alice_id)
        assert (user.username, user.about_me) == ("alicia", "Hi there")


def test_edit_profile_cannot_take_another_users_name(client, auth, make_user, app):
    alice_id = auth.signed_in("alice")
    bob_id = make_user("bob")
    response = client.post("/edit_profile", data={"username": "bob", "about_me": "mine now"})
    assert response.status_code == 400
    assert "That username is taken" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, alice_id).username == "alice"
        assert db.session.get(User, bob_id).about_me is None


def test_edit_profile_only_ever_edits_the_signed_in_user(client, auth, make_user, app):
    auth.signed_in("alice")
    bob_id = make_user("bob")
    client.post(
        "/edit_profile",
        data={"username": "alice", "about_me": "x", "id": str(bob_id), "user_id": str(bob_id)},
    )
    with app.app_context():
        assert db.session.get(User, bob_id).about_me is None


@pytest.mark.parametrize("path", ["/follow/bob", "/unfollow/bob"])
def test_concurrent_follow_changes_are_idempotent_and_never_crash(app, make_user, path):
    # Given alice signed in on four tabs, following bob or not, depending on the button
    alice_id, bob_id = make_user("alice"), make_user("bob")
    if path.startswith("/unfollow"):
        with app.app_context():
            db.session.execute(followers.insert().values(follower_id=alice_id, followed_id=bob_id))
            db.session.commit()
    tabs = [app.test_client() for _ in range(4)]
    for tab in tabs:
        assert (
            tab.post("/auth/login", data={"username": "alice", "password": PASSWORD}).status_code
            == 302
        )
    barrier = threading.Barrier(len(tabs))
    statuses: list[int] = []

    def click(tab) -> None:
        barrier.wait(timeout=10)
        statuses.append(tab.post(path).status_code)

    # When all four click the same button at the same moment
    threads = [threading.Thread(target=click, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then every click succeeds, and the relation ends as asked: one row, or none
    assert statuses == [302] * 4
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(followers))
    assert rows == (1 if path.startswith("/follow") else 0)


def test_profile_counts_followers_and_shows_the_right_button(client, auth, make_user):
    auth.signed_in("alice")
    make_user("bob")
    make_user("carol")
    client.post("/follow/bob")
    bob = client.get("/user/bob").get_data(as_text=True)
    assert "1 follower · 0 following" in text(bob) and 'action="/unfollow/bob"' in bob
    assert 'href="/user/bob/followers"' in bob and 'href="/user/bob/following"' in bob
    alice = client.get("/user/alice").get_data(as_text=True)
    assert "0 followers · 1 following" in text(alice)
    carol = client.get("/user/carol").get_data(as_text=True)
    assert 'action="/follow/carol"' in carol


def text(html: str) -> str:
    """Return the page's text: tags dropped, whitespace runs made one space."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def names(html: str) -> list[str]:
    return re.findall(r'<li class="[^"]*person">.*?<a [^>]*>([^<]*)</a>', html, re.DOTALL)


def test_people_pages_list_newest_follows_first_by_cursor(client, auth, make_user, app):
    # Given 12 followers of alice, some following at the same moment, and whom one follows
    alice = auth.signed_in("alice")
    fans = [make_user(f"fan{i:02d}") for i in range(12)]
    moment = utcnow() - timedelta(days=1)
    with app.app_context():
        for i, fan in enumerate(fans):
            at = moment + timedelta(seconds=i // 3)  # three follows a second
            db.session.execute(
                insert(followers).values(follower_id=fan, followed_id=alice, created_at=at)
            )
        db.session.execute(
            insert(followers).values(follower_id=fans[0], followed_id=fans[1], created_at=moment)
        )
        db.session.commit()
    # When alice's followers are paged older, then back newer
    seen, html = [], client.get("/user/alice/followers").get_data(as_text=True)
    first = html
    while True:
        seen.append(names(html))
        if link(html, "next") is None:
            break
        html = client.get(link(html, "next")).get_data(as_text=True)
    back = client.get(link(html, "prev")).get_data(as_text=True)
    # Then newest follow first (ties by newest account), each once, five a page
    expected = [
        f"fan{i:02d}" for i in sorted(range(12), key=lambda i: (i // 3, fans[i]), reverse=True)
    ]
    assert sum(seen, []) == expected and [len(p) for p in seen] == [5, 5, 2]
    assert names(back) == seen[1] and link(first, "prev") is None
    # And the other list is whom someone follows, ties by newest account first
    following = client.get("/user/fan00/following").get_data(as_text=True)
    assert names(following) == ["fan01", "alice"]


@pytest.mark.parametrize(
    "path",
    ["/user/nobody/followers", "/user/nobody/following", "/user/alice/followers?before=x",
     "/user/alice/following?after=1"],
)  # fmt: skip
def test_people_pages_of_nobody_or_nowhere_are_404(client, auth, path):
    auth.signed_in("alice")
    assert client.get(path).status_code == 404


def test_a_user_s_card_is_a_fragment_with_counts_and_the_reader_s_follow_button(
    app, client, auth, make_user
):
    make_user("linus")
    auth.signed_in("alice")
    with app.app_context():
        linus = db.session.scalar(select(User).where(User.username == "linus"))
        linus.about_me = "<script>alert(1)</script> kernels"
        db.session.commit()
    response = client.get("/user/LINUS/popup?next=/explore")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("private, max-age=")
    assert "<html" not in page and "&lt;script&gt;" in page and "<script>" not in page
    assert 'class="popup-followers">0<' in page and ">Follow<" in page
    assert 'name="next" value="/explore"' in page
    followed = client.post("/follow/linus", data={"next": "/explore"})
    assert followed.headers["Location"] == "/explore"
    assert ">Unfollow<" in client.get("/user/linus/popup").get_data(as_text=True)
    own = client.get("/user/alice/popup").get_data(as_text=True)
    assert "popup-follow " not in own and "<form" not in own
    assert client.get("/user/nobody/popup").status_code == 404


def test_following_never_sends_the_browser_off_the_site(client, auth, make_user):
    make_user("linus")
    auth.signed_in("alice")
    response = client.post("/follow/linus", data={"next": "//evil.example/x"})
    assert response.headers["Location"] == "/user/linus"


def test_a_signed_out_visitor_to_the_home_page_is_welcomed_not_scolded(
    client, make_user, add_posts
):
    # Given a site with posts
    make_user("bob")
    add_posts("bob", "first", "second", "third", "fourth")
    # When a signed-out visitor opens /
    response = client.get("/")
    page = response.get_data(as_text=True)
    # Then it is a welcome with a way in and a glimpse of the newest posts, and no error flash
    assert response.status_code == 200
    assert "Welcome to Microblog" in page
    assert 'href="/auth/register"' in page and 'href="/auth/login"' in page
    assert "fourth" in page and "second" in page and "first" not in page
    assert "Please sign in" not in page and "alert-" not in page
    # And writing a post still needs a sign-in
    refused = client.post("/", data={"post": "anonymous?"})
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/auth/login")
    assert post_count(client.application) == 4


def test_signing_out_shows_one_message(client, auth):
    auth.signed_in()
    response = client.post("/auth/logout", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "You have been signed out." in page and "Please sign in" not in page


def test_someone_who_follows_nobody_is_shown_people_posting_lately_and_explore(
    client, auth, make_user, add_posts
):
    # Given a new user, people who posted (dave longest ago), and one who never posted
    auth.signed_in("newbie")
    for name in ("dave", "erin", "frank", "quiet"):
        make_user(name)
    add_posts("dave", "d1")
    add_posts("erin", "e1")
    add_posts("frank", "f1")
    add_posts("newbie", "my first")
    # When they open their home
    page = client.get("/").get_data(as_text=True)
    # Then people posting lately are suggested, newest first, with Explore; not them, not quiet
    suggested = re.findall(r'suggestion">.*?href="/user/(\w+)"', page, re.S)
    assert suggested == ["frank", "erin", "dave"], suggested
    assert 'href="/explore"' in page
    # When they follow one from there
    response = client.post("/follow/frank", data={"next": "/"})
    assert response.headers["Location"] == "/"
    # Then the start panel has done its job: their home is their timeline
    page = client.get("/").get_data(as_text=True)
    assert "Make this page yours" not in page and "f1" in page


def test_an_empty_home_says_how_to_fill_it(client, auth):
    auth.signed_in("newbie")
    page = client.get("/").get_data(as_text=True)
    assert "No posts yet. Write your first one above." in page
    assert "Make this page yours" in page and 'href="/explore"' in page
