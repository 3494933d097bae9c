"""Hostile input: every form and route, fed what no browser sends, answers 4xx and stores nothing.

The first tests pin each class of bad input to its exact answer; the property-based ones at the
end (Hypothesis) throw generated values, bodies and URL segments at every form and route.
"""

import io
import json
import os
import re
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.jobs.models import Task
from microblog.messages.models import Message
from microblog.posts.models import Post
from tests.support.web import PASSWORD
from tests.support.wire import stays_on_site

# Examples per property and kind of database; HOSTILE_EXAMPLES=600 makes a deeper sweep.
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Values that found bugs before, or sit on a rule's edge.
NASTY = [
    "\x00", "al\x00ice", "alice\n", "Alice", "ＡＬＩＣＥ", "alice.", "\u3164", "\u200b", " \t\n",
    "\x1b[31m", "<script>alert(1)</script>", "١٢٣", "9" * 30, "-1", "a" * 300,
]  # fmt: skip
# Any text UTF-8 can carry (lone surrogates cannot be sent; raw bytes bodies cover bad UTF-8).
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300), st.sampled_from(NASTY)
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
FORMS = {
    "/auth/login": ("username", "password", "remember_me"),
    "/auth/register": ("username", "email", "password", "password2"),
    "/": ("post",),
    "/edit_profile": ("username", "about_me"),
    "/auth/account": ("current_password", "password", "password2"),
    "/auth/reset_password_request": ("email",),
    "/send_message/bob": ("message",),
    "/auth/language": ("language",),
    "/auth/email": ("address-email", "address-current_password"),
    "/auth/confirmation": ("submit",),
}
SIGNED_IN_FORMS = ("/", "/edit_profile", "/auth/account", "/send_message/bob", "/auth/language",
                   "/auth/email", "/auth/confirmation")  # fmt: skip


@pytest.fixture
def app_config(app_config):
    # The throttles have their own tests; here they would turn later examples into 429s.
    return {**app_config, "THROTTLE_ENABLED": False}


@pytest.fixture
def alice(client, auth, make_user) -> FlaskClient:
    """A client signed in as alice (bob exists too); made once per test, however many
    examples it runs."""
    make_user("bob")
    auth.signed_in("alice")
    return client


def snapshot(app: Flask) -> tuple:
    """Return everything a request could store: row counts, and every user's profile."""
    with app.app_context():
        counts = tuple(
            db.session.scalar(select(func.count()).select_from(table))
            for table in (
                User.__table__,
                Post.__table__,
                followers,
                Task.__table__,
                Message.__table__,
            )  # fmt: skip
        )
        users = db.session.execute(
            select(
                User.id,
                User.username,
                User.about_me,
                User.password_hash,
                User.unread_messages,
                User.language,
                User.email,
                User.email_confirmed_at,
                User.pending_email,
            ).order_by(User.id)  # fmt: skip
        ).all()
        db.session.remove()
        return counts, users


def assert_refused_and_unchanged(app: Flask, request, expected_status: int | None = None):
    """Send ``request()``; it must be refused (4xx, or the given status) with nothing stored."""
    before = snapshot(app)
    response = request()
    if expected_status is not None:
        assert response.status_code == expected_status, response.get_data(as_text=True)[:500]
    assert 400 <= response.status_code < 500, response.status_code
    assert snapshot(app) == before
    return response


@pytest.mark.parametrize("path", FORMS)
def test_a_json_body_to_a_form_is_415_and_stores_nothing(alice, app, path):
    client = alice if path in SIGNED_IN_FORMS else app.test_client()
    body = {field: {"nested": [1]} for field in FORMS[path]}
    response = assert_refused_and_unchanged(app, lambda: client.post(path, json=body), 415)
    assert "not JSON" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", FORMS)
def test_a_file_where_text_belongs_is_400_and_stores_nothing(alice, app, path):
    client = alice if path in SIGNED_IN_FORMS else app.test_client()
    data = {field: (io.BytesIO(b"\x00\xff"), "x.bin") for field in FORMS[path]}
    response = assert_refused_and_unchanged(app, lambda: client.post(path, data=data), 400)
    assert "file uploads" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "field", "value", "message"),
    [
        ("/", "post", "hello\x00", "Remove the control characters"),
        ("/", "post", "bell\x07", "Remove the control characters"),
        ("/", "post", "\u3164\u200b \n", "at least one visible character"),
        ("/edit_profile", "about_me", "me\x00", "Remove the control characters"),
        ("/edit_profile", "username", "bob\n", "Use letters, digits"),
        ("/auth/login", "username", "alice\x00", "Remove the control characters"),
        ("/auth/login", "password", "x\x00" * 80, "at most 128 characters"),
        ("/auth/reset_password_request", "email", "alice@example.com\x00", "Remove the control"),
        (
            "/auth/reset_password_request",
            "email",
            "a@example.com\nBcc: b@example.com",
            "Remove the control",
        ),
        ("/auth/reset_password_request", "email", "ａｌｉｃｅ＠example", "Invalid email"),
        ("/auth/reset_password_request", "email", "x" * 121 + "@example.com", "120 characters"),
        ("/send_message/bob", "message", "hi\x00", "Remove the control characters"),
        ("/send_message/bob", "message", "\u3164\u200b", "at least one visible character"),
    ],
)
def test_control_and_invisible_characters_get_a_field_error(
    alice, app, path, field, value, message
):
    client = alice if path in SIGNED_IN_FORMS else app.test_client()
    data = {"username": "alice", "password": PASSWORD, "post": "ok", field: value}
    response = assert_refused_and_unchanged(app, lambda: client.post(path, data=data), 400)
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    ["/user/al%00ice", "/user/" + "a" * 5000, "/tasks/%00", "/tasks/" + "f" * 33,
     "/exports/%00/download", "/exports/ABCDEF0123456789ABCDEF0123456789/download"],
)  # fmt: skip
def test_url_segments_that_name_nothing_are_404(alice, path):
    assert alice.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/follow/al%00ice", "/unfollow/%00"])
def test_following_a_name_that_cannot_exist_is_404(alice, app, path):
    assert_refused_and_unchanged(app, lambda: alice.post(path), 404)


def test_a_body_over_the_limit_is_413_in_the_site_look(alice, app):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = assert_refused_and_unchanged(app, lambda: alice.post("/", data={"post": big}), 413)
    assert "larger than this site accepts" in response.get_data(as_text=True)


def given_fuzz(*strategies, **kwargs):
    return lambda test: FUZZ(given(*strategies, **kwargs)(test))


BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={f: TEXT for f in ("username", "email", "password",
                           "password2", "post", "about_me", "current_password", "remember_me",
                           "message", "language", "address-email",
                           "address-current_password")}
                          ).map(lambda form: {"data": form}),
    JSON_VALUES.map(lambda value: {"data": json.dumps(value), "content_type": "application/json"}),
    st.binary(max_size=300).map(lambda raw: {"data": raw, "content_type": "text/plain"}),
    st.binary(max_size=300).map(
        lambda raw: {"data": raw, "content_type": "application/x-www-form-urlencoded"}
    ),
)  # fmt: skip
ACCEPT = st.sampled_from(["text/html", "application/json", "*/*", "text/event-stream", ""])


@given_fuzz(path=st.sampled_from(list(FORMS)), body=BODIES, accept=ACCEPT)
def test_no_form_post_is_a_server_error_and_refused_ones_store_nothing(
    alice, app, path, body, accept
):
    # Given alice signed in (for her forms) or an anonymous visitor (for login and register)
    client = alice if path in SIGNED_IN_FORMS else app.test_client()
    # When the form gets whatever the generated body is
    before = snapshot(app)
    response = client.post(path, headers={"Accept": accept}, **body)
    # Then the answer is never a 500, and a refusal leaves the database as it was
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        assert snapshot(app) == before


SEGMENT = TEXT.filter(bool).map(lambda text: quote(text, safe=""))
ROUTES = st.one_of(
    st.tuples(st.sampled_from(["GET"]),
              st.sampled_from(["/user/{}", "/tasks/{}", "/exports/{}/download",
                               "/user/{}/popup"])),
    st.tuples(st.sampled_from(["POST"]), st.sampled_from(["/follow/{}", "/unfollow/{}"])),
    st.tuples(st.sampled_from(["GET", "POST"]), st.just("/auth/reset_password/{}")),
    st.tuples(st.sampled_from(["GET", "POST"]), st.just("/auth/confirm/{}")),
    st.tuples(st.sampled_from(["GET", "POST"]), st.just("/send_message/{}")),
)  # fmt: skip
QUERY_TARGETS = st.sampled_from(
    [
        "/",
        "/explore",
        "/user/alice",
        "/auth/login",
        "/stream",
        "/auth/reset_password_request",
        "/messages",
        "/search",
        "/search?q=word",
    ]
)


@given_fuzz(route=ROUTES, segment=SEGMENT, accept=ACCEPT)
def test_no_url_segment_is_a_server_error(alice, route, segment, accept):
    method, template = route
    response = alice.open(template.format(segment), method=method, headers={"Accept": accept})
    assert response.status_code < 500, response.get_data(as_text=True)[:500]


QUERY_NAMES = st.sampled_from(["page", "before", "after", "next", "last_event_id", "q"])


@given_fuzz(target=QUERY_TARGETS, name=QUERY_NAMES, value=TEXT, accept=ACCEPT)
def test_no_query_parameter_is_a_server_error(alice, target, name, value, accept):
    query = f"{name}={quote(value, safe='')}"
    separator = "&" if "?" in target else "?"
    response = alice.get(f"{target}{separator}{query}", headers={"Accept": accept},
                         buffered=False)  # fmt: skip
    try:
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
    finally:
        response.close()


@pytest.fixture
def registered(make_user) -> int:
    """Alice's account, made once for every example of a test."""
    return make_user("alice")


@given_fuzz(next_value=TEXT | st.sampled_from(["/\t/evil.example", "/\\evil.example", "//x"]))
def test_no_login_redirect_leaves_the_site_whatever_next_holds(app, registered, next_value):
    response = app.test_client().post(
        "/auth/login", query_string={"next": next_value},
        data={"username": "alice", "password": PASSWORD},
    )  # fmt: skip
    if "\x00" in next_value:  # no query may hold a NUL
        assert response.status_code == 400 and "Location" not in response.headers
        return
    assert response.status_code == 302
    assert stays_on_site("http://localhost", response.headers["Location"]), next_value


@pytest.fixture
def reset_link(app, registered) -> str:
    """A live reset link for alice, made once for every example of a test."""
    from microblog.recovery.tokens import make_token

    with app.app_context():
        link = "/auth/reset_password/" + make_token(db.session.get(User, registered))
        db.session.remove()
        return link


@given_fuzz(body=BODIES, accept=ACCEPT)
def test_no_reset_form_post_is_a_server_error_and_refused_ones_store_nothing(
    app, reset_link, body, accept
):
    before = snapshot(app)
    response = app.test_client().post(reset_link, headers={"Accept": accept}, **body)
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        assert snapshot(app) == before


# What search engines and SQL treat as syntax, mixed with words, spaces and any character.
SEARCH_SYNTAX = st.lists(
    st.sampled_from(
        list("\"*:^()-+~!&|<>'%_;\\")
        + ["NEAR(", " AND ", " OR ", " NOT ", " or ", "word", "the", " ", "é", "日"]
    ),
    max_size=40,
).map("".join)
LONG_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=195, max_size=400)


@given_fuzz(q=st.one_of(TEXT, SEARCH_SYNTAX, LONG_TEXT),
            before=st.none() | TEXT)  # fmt: skip
def test_no_search_is_a_server_error_and_long_ones_are_400(alice, q, before):
    args = {"q": q} if before is None else {"q": q, "before": before}
    response = alice.get("/search", query_string=args)
    page = response.get_data(as_text=True)
    if "\x00" in q + (before or ""):
        assert response.status_code == 400
    elif len(q.strip()) > 200:
        assert response.status_code == 400 and "Keep searches to 200 characters." in page
    else:
        assert response.status_code in (200, 404), page[:500]  # 404: a cursor naming nothing
        assert response.status_code == 200 or before is not None


# What browsers send in Accept-Language, and what they never would: any Latin-1 text (what a
# header can carry), tags with odd weights, and headers far longer than any browser's.
LANGUAGE_TAGS = st.sampled_from(["es", "en", "es-ES", "EN-us", "de", "*", "x-klingon", "zz", ""])
ACCEPT_LANGUAGE = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300),
    st.lists(
        st.tuples(LANGUAGE_TAGS, st.sampled_from(["", ";q=0.5", ";q=0", ";q=1.5", ";q=-1",
                                                  ";q=abc", ";q=", ";"])),
        max_size=30,
    ).map(lambda tags: ",".join(tag + weight for tag, weight in tags)),
    st.integers(1_000, 6_000).map(lambda n: ("es;q=0.9," * n)[:n]),
)  # fmt: skip
LANGUAGE_PAGES = st.sampled_from(["/", "/explore", "/user/alice", "/messages", "/search?q=x",
                                  "/auth/login", "/auth/account", "/nowhere"])  # fmt: skip


@given_fuzz(path=LANGUAGE_PAGES, header=ACCEPT_LANGUAGE, cookie=st.none() | TEXT.map(
    lambda text: quote(text, safe="")), signed_in=st.booleans())  # fmt: skip
def test_no_language_header_or_cookie_is_a_server_error(app, alice, path, header, cookie,
                                                        signed_in):  # fmt: skip
    # Given a signed-in or anonymous visitor whose browser sends any Accept-Language, and any
    # value in the language cookie
    client = alice if signed_in else app.test_client()
    if cookie is not None:
        client.set_cookie("language", cookie)
    # When a page is asked for
    response = client.get(path, headers={"Accept-Language": header})
    client.delete_cookie("language")
    # Then it is answered in a language the site speaks, never with a 500
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    lang = re.search(r'<html lang="(\w+)"', response.get_data(as_text=True))
    assert lang is None or lang.group(1) in ("en", "es")
