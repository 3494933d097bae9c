"""Hostile input on the wire: through the real gunicorn, on both databases, requests as no
browser sends them (framing, cookies, headers) and every number, filter and redirect target a
request names, generated across its whole type rather than picked by hand.
"""

import os
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from microblog.extensions import db
from microblog.posts.models import Post
from microblog.types import INTEGER_MAX
from tests.support.web import live_session
from tests.support.wire import (
    CONTROL,
    SECURITY_HEADERS,
    chunked,
    cookie_header,
    csrf_token,
    send_raw,
    stays_on_site,
)

# Examples per property; HOSTILE_EXAMPLES=600 makes a deeper sweep than the suite's.
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "40"))
WIRE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any text, with every control character likely to turn up, alone or inside a word.
ANY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from(CONTROL), max_size=60),
    st.sampled_from(CONTROL).flatmap(lambda c: st.sampled_from([c, f"a{c}", f"{c}b", f"a{c}b"])),
)
# Integers across the 64-bit range and past it, with the edges of every width named, and
# small ones (a duration's digits) as often.
EDGES = [2**n + d for n in (15, 31, 32, 53, 63, 64) for d in (-1, 0, 1)]
ANY_INTEGER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(EDGES),
    st.integers(min_value=0, max_value=10**7),
)


@pytest.fixture
def signed_in(gunicorn_server, live_user) -> tuple[requests.Session, str]:
    """A session signed in through the real login form, and its username."""
    _, username = live_user("wire")
    return live_session(gunicorn_server, username), username


def post_count(live_app, username: str) -> int:
    with live_app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(Post).where(Post.author.has(username=username))
        )
        db.session.remove()
        return count


def post_routes(app, username: str) -> list[str]:
    """Every POST route of the app, its URL filled with values that name something."""
    values = {"username": username, "task_id": "0" * 32, "name": "word_count",
              "token": "not-a-token", "recipient": username}  # fmt: skip
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods:
            paths.append(rule.rule)
            for name, value in values.items():
                paths[-1] = paths[-1].replace(f"<{name}>", value)
    return sorted(paths)


def post_head(base_url: str, path: str, cookies: str, extra: str = "") -> str:
    host = urlsplit(base_url).netloc
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookies}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{extra}"
    )


def test_a_malformed_chunked_body_is_400_on_every_post_route(gunicorn_server, signed_in, live_app):
    # Given alice signed in, and every route that takes a POST
    session, username = signed_in
    before = post_count(live_app, username)
    for path in post_routes(live_app, username):
        for cookies in (cookie_header(session), ""):  # signed in, and not
            # When a body comes with a chunk size that is not hexadecimal
            head = post_head(gunicorn_server, path, cookies, "Transfer-Encoding: chunked")
            response = send_raw(gunicorn_server, head, b"zz\r\npost=hi\r\n0\r\n\r\n")
            # Then it is refused as a bad request, in the site's answer with its headers
            assert response.status == 400, (path, response.status, response.body[:300])
            assert all(name in response.headers for name in SECURITY_HEADERS), path
            assert b"Traceback" not in response.body
    assert post_count(live_app, username) == before


def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(
    gunicorn_server, signed_in, live_app
):
    session, username = signed_in
    token = csrf_token(session, gunicorn_server)
    body = f"csrf_token={token}&post=".encode() + b"x" * 200_000
    head = post_head(gunicorn_server, "/", cookie_header(session), "Transfer-Encoding: chunked")
    response = send_raw(gunicorn_server, head, chunked(body))
    assert response.status == 413, response.body[:300]
    assert b"larger than this site accepts" in response.body
    assert post_count(live_app, username) == 0


def test_a_chunked_body_within_the_limit_is_read_whole(gunicorn_server, signed_in, live_app):
    # Given a chunked form whose post comes after 50 KB of other fields, in many chunks
    session, username = signed_in
    token = csrf_token(session, gunicorn_server)
    body = b"pad=" + b"y" * 50_000 + f"&csrf_token={token}&post=sent+in+chunks".encode()
    head = post_head(gunicorn_server, "/", cookie_header(session), "Transfer-Encoding: chunked")
    # When it is posted
    response = send_raw(gunicorn_server, head, chunked(body, size=1000))
    # Then the post at its end is stored
    assert response.status == 302, response.body[:300]
    assert post_count(live_app, username) == 1


COOKIE_PATHS = ["/healthz", "/", "/auth/login", "/static/microblog.css", "/stream", "/explore"]


@pytest.mark.parametrize("path", COOKIE_PATHS)
@pytest.mark.parametrize(
    "cookie",
    ["remember_token=abc|\xc3\xa9", "remember_token=1|\xff\xfe", "session=\xc3\xa9.x.y",
     "session=.eJw%01", "remember_token=" + "a" * 4000 + "|b", "remember_token=|"],
)  # fmt: skip
def test_a_cookie_no_browser_was_given_is_no_server_error(gunicorn_server, path, cookie):
    host = urlsplit(gunicorn_server).netloc
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}"
    response = send_raw(gunicorn_server, head, timeout=15)
    assert response.status < 500, (response.status, response.body[:300])
    assert all(name in response.headers for name in SECURITY_HEADERS)


# Any byte a header value can carry on the wire (CR and LF would end the header instead),
# often around the "|" that splits a remember-me cookie's value from its signature.
COOKIE_BYTES = st.one_of(
    st.binary(max_size=80),
    st.tuples(st.binary(max_size=20), st.binary(max_size=40)).map(lambda p: p[0] + b"|" + p[1]),
).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@WIRE
@given(
    name=st.sampled_from(["remember_token", "session", "other"]),
    value=COOKIE_BYTES,
    path=st.sampled_from(["/healthz", "/", "/explore", "/static/microblog.css"]),
)
def test_no_cookie_value_is_a_server_error(gunicorn_server, name, value, path):
    host = urlsplit(gunicorn_server).netloc
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {name}=" + value.decode("latin-1")
    response = send_raw(gunicorn_server, head)
    assert response.status < 500, (value, response.status, response.body[:300])


@pytest.mark.parametrize(
    "header",
    ["SCRIPT_NAME: /elsewhere", "SCRIPT_NAME: /\x01", "PATH_INFO: /admin/tasks",
     "X-Forwarded-Proto: gopher", "X-Forwarded-For: \xff", "Host: \xff", "Expect: 100-continue",
     "Content-Type: multipart/form-data; boundary=", "Last-Event-ID: 99999999999999999999999"],
)  # fmt: skip
def test_odd_headers_are_no_server_error_and_are_not_echoed(gunicorn_server, signed_in, header):
    session, _ = signed_in
    host = urlsplit(gunicorn_server).netloc
    lines = f"GET /explore HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie_header(session)}"
    if header.startswith("Host:"):
        lines = lines.replace(f"Host: {host}", header)
    else:
        lines += "\r\n" + header
    response = send_raw(gunicorn_server, lines)
    assert response.status < 500, (response.status, response.body[:300])
    assert b"elsewhere" not in response.body


LISTS = ["/", "/explore", "/user/{}", "/user/{}/followers", "/user/{}/following"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("side", ["before", "after"])
def test_a_cursor_past_the_id_column_is_404(gunicorn_server, signed_in, path, side):
    session, username = signed_in
    url = gunicorn_server + path.format(username)
    for post_id in (INTEGER_MAX + 1, 2**63, 10**18):
        response = session.get(url, params={side: f"1.{post_id}"}, timeout=10)
        assert response.status_code == 404, (post_id, response.status_code)
    assert session.get(url, params={side: f"1.{INTEGER_MAX}"}, timeout=10).status_code == 200


@WIRE
@given(
    path=st.sampled_from(LISTS),
    side=st.sampled_from(["before", "after", "page"]),
    micros=ANY_INTEGER,
    post_id=ANY_INTEGER,
)
def test_no_cursor_is_a_server_error(gunicorn_server, signed_in, path, side, micros, post_id):
    session, username = signed_in
    value = f"{micros}.{post_id}" if side != "page" else str(post_id)
    response = session.get(
        gunicorn_server + path.format(username), params={side: value}, timeout=10
    )
    assert response.status_code < 500, (value, response.status_code)
    if side != "page" and not (0 <= post_id <= INTEGER_MAX):
        assert response.status_code == 404


@pytest.fixture
def admin(signed_in, live_app):
    session, username = signed_in
    result = live_app.test_cli_runner().invoke(args=["users", "grant-admin", username])
    assert result.exit_code == 0, result.output
    return session


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("older_than=999999d", "at most 100 years"),
        ("older_than=36501d", "at most 100 years"),
        ("type=%00", "NUL character"),
        ("type=a%01b", "not a job type"),
        ("type=" + "x" * 65, "not a job type"),
        ("user=%00", "NUL character"),
        ("status=%00", "NUL character"),
    ],
)
def test_bad_operator_filters_are_400_with_a_message(gunicorn_server, admin, query, message):
    response = admin.get(f"{gunicorn_server}/admin/tasks?{query}", timeout=10)
    assert response.status_code == 400, response.text[:300]
    assert message in response.text


ADMIN_FILTERS = st.one_of(
    st.tuples(st.just("older_than"), st.tuples(ANY_INTEGER, st.sampled_from("smhdx")).map(
        lambda pair: f"{pair[0]}{pair[1]}")),
    st.tuples(st.sampled_from(["type", "user", "status", "before", "older_than"]), ANY_TEXT),
)  # fmt: skip


@WIRE
@given(fields=st.lists(ADMIN_FILTERS, min_size=1, max_size=3))
def test_no_operator_filter_is_a_server_error(gunicorn_server, admin, fields):
    query = "&".join(f"{quote(name)}={quote(value, safe='')}" for name, value in fields)
    response = admin.get(f"{gunicorn_server}/admin/tasks?{query}", timeout=10)
    assert response.status_code < 500, (query, response.text[:300])


NEXT_VALUES = ANY_TEXT | st.sampled_from(
    ["/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example",
     "https://evil.example", "\x00//evil.example", " //evil.example", "/%09/evil.example",
     "/\u3000/evil.example", "/.//evil.example", "\\\\evil.example", "/a\r\nLocation: //x"]
)  # fmt: skip


@pytest.fixture
def task_forms(gunicorn_server, signed_in) -> tuple[requests.Session, list[str]]:
    """A session with a queued export (no worker runs here), and the forms that redirect."""
    session, _ = signed_in
    token = csrf_token(session, gunicorn_server)
    session.headers["X-CSRFToken"] = token
    response = session.post(gunicorn_server + "/exports", allow_redirects=False, timeout=10)
    assert response.status_code == 303, response.text[:300]
    task_id = session.get(gunicorn_server + "/", timeout=10).text.split('data-task-id="')[1][:32]
    forms = ["/exports", f"/tasks/{task_id}/dismiss", "/tasks/start/export_posts"]
    return session, forms


@WIRE
@given(next_value=NEXT_VALUES, form=st.integers(0, 2))
def test_no_location_leaves_the_site_whatever_next_holds(
    gunicorn_server, task_forms, next_value, form
):
    session, forms = task_forms
    response = session.post(
        gunicorn_server + forms[form], data={"next": next_value}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text[:300]
    location = response.headers["Location"]
    assert stays_on_site(gunicorn_server, location), (next_value, location)


def test_a_page_at_a_hostile_path_puts_no_hostile_next_in_its_forms(gunicorn_server, task_forms):
    session, _ = task_forms
    page = session.get(gunicorn_server + "/%09/evil.example", timeout=10)
    assert page.status_code == 404
    assert 'name="next"' in page.text  # the task card's forms are there
    assert "evil.example" not in page.text.split('name="next"')[1][:200]
