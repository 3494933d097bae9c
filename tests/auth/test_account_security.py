"""Sessions that can be revoked, cookie flags, security headers and throttled sign-in."""

import re
import threading
from http.cookies import SimpleCookie

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from microblog.auth.sessions import SignIn
from microblog.extensions import db
from tests.support.web import JSON, PASSWORD

NEW_PASSWORD = "another-horse-7"


def cookies_set(response) -> dict[str, SimpleCookie]:
    """Return each cookie the response sets, by name, with its attributes."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        found.update({name: morsel for name, morsel in cookie.items()})
    return found


def signed_in_as(client: FlaskClient) -> str | None:
    """Return whose profile link the page shows, or None for an anonymous visitor."""
    response = client.get("/explore")
    if response.status_code != 200:
        return None
    match = re.search(r'href="/user/([^"]+)">Profile<', response.get_data(as_text=True))
    return match.group(1) if match else None


def sign_in_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(SignIn))


def test_cookies_are_samesite_lax_and_httponly(client, make_user):
    make_user("alice")
    response = client.post(
        "/auth/login", data={"username": "alice", "password": PASSWORD, "remember_me": "y"}
    )
    cookies = cookies_set(response)
    assert {"session", "remember_token"} <= cookies.keys()
    for morsel in cookies.values():
        assert morsel["samesite"] == "Lax" and morsel["httponly"]
        assert not morsel["secure"]  # plain HTTP outside production


def test_production_cookies_are_secure_and_pages_send_hsts(make_app, make_user, monkeypatch):
    monkeypatch.setenv("MICROBLOG_ENV", "production")
    app = make_app()
    client = app.test_client()
    make_user("alice")
    response = client.post(
        "/auth/login", data={"username": "alice", "password": PASSWORD, "remember_me": "y"}
    )
    assert all(morsel["secure"] for morsel in cookies_set(response).values())
    assert "max-age=31536000" in client.get("/auth/login").headers["Strict-Transport-Security"]


def test_every_page_sends_the_security_headers(client):
    response = client.get("/auth/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # not over plain HTTP


@pytest.mark.parametrize("path", ["/auth/login", "/explore", "/nowhere"])
def test_pages_say_they_vary_by_language_and_cookie(client, path):
    # A shared cache must not hand one reader's page (language, sign-in) to another
    vary = {value.strip() for value in client.get(path).headers["Vary"].split(",")}
    assert {"Accept-Language", "Cookie"} <= vary


def test_pages_have_no_inline_script_or_style(client, auth, app):
    # Given pages with avatars, task cards and forms
    auth.signed_in("alice")
    client.post("/", data={"post": "hello"})
    for path in ("/", "/explore", "/user/alice", "/edit_profile", "/auth/account"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        # Then nothing the CSP would refuse is in them
        assert " style=" not in html, path
        # (a JSON data block, the scripts' texts, is not run: the CSP does not apply to it)
        assert not re.search(r'<script(?![^>]*\b(src=|type="application/json"))', html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_a_session_cookie_replayed_after_logout_is_anonymous(client, auth, app):
    # Given alice signed in, with a copy of her cookies taken
    auth.signed_in("alice")
    stolen = app.test_client()
    for cookie in client._cookies.values():
        stolen.set_cookie(cookie.key, cookie.value)
    assert signed_in_as(stolen) == "alice"
    # When she logs out
    auth.logout()
    # Then the copy no longer signs anyone in
    assert signed_in_as(stolen) is None
    assert sign_in_count(app) == 0


def test_a_remember_me_cookie_stops_working_after_logout(client, make_user, app):
    # Given alice signed in with "Remember me", and only her remember-me cookie kept elsewhere
    make_user("alice")
    client.post("/auth/login", data={"username": "alice", "password": PASSWORD, "remember_me": "y"})
    remembered = app.test_client()
    remembered.set_cookie("remember_token", client.get_cookie("remember_token").value)
    assert signed_in_as(remembered) == "alice"
    # When she logs out in the first browser
    client.post("/auth/logout")
    # Then the cookie kept elsewhere is revoked as well
    fresh = app.test_client()
    fresh.set_cookie("remember_token", remembered.get_cookie("remember_token").value)
    assert signed_in_as(fresh) is None


def test_logging_out_in_one_browser_keeps_the_others_signed_in(make_user, app):
    make_user("alice")
    laptop, phone = app.test_client(), app.test_client()
    for browser in (laptop, phone):
        browser.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    laptop.post("/auth/logout")
    assert signed_in_as(laptop) is None
    assert signed_in_as(phone) == "alice"


def test_a_password_change_signs_out_every_other_device(make_user, app):
    # Given alice signed in on a laptop and a phone
    make_user("alice")
    laptop, phone = app.test_client(), app.test_client()
    for browser in (laptop, phone):
        browser.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    # When she changes her password on the laptop
    response = laptop.post(
        "/auth/account",
        data={"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    # Then the laptop stays signed in, the phone is out, and only the new password works
    assert signed_in_as(laptop) == "alice"
    assert signed_in_as(phone) is None
    assert sign_in_count(app) == 1
    fresh = app.test_client()
    old = fresh.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    assert old.status_code == 400
    new = fresh.post("/auth/login", data={"username": "alice", "password": NEW_PASSWORD})
    assert new.status_code == 302


def test_a_wrong_current_password_changes_nothing(client, auth, app):
    auth.signed_in("alice")
    response = client.post(
        "/auth/account",
        data={"current_password": "wrong-pass-1", "password": NEW_PASSWORD,
              "password2": NEW_PASSWORD},
    )  # fmt: skip
    assert response.status_code == 400
    assert "not your current password" in response.get_data(as_text=True)
    assert auth.login("alice", PASSWORD).status_code == 302


def test_sign_out_everywhere_ends_every_sign_in(make_user, app):
    make_user("alice")
    laptop, phone = app.test_client(), app.test_client()
    for browser in (laptop, phone):
        browser.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    response = laptop.post("/auth/sign_out_everywhere")
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert signed_in_as(laptop) is None and signed_in_as(phone) is None
    assert sign_in_count(app) == 0


SIGN_IN_ENDED = "Your sign-in has ended: you signed out elsewhere, your password was changed"
PLEASE_SIGN_IN = "Please sign in to see this page."


@pytest.mark.parametrize("first_page", ["/explore", "/messages"])
def test_a_browser_signed_out_elsewhere_is_told_why_once(make_user, app, first_page):
    # Given a user signed in on a laptop and a phone
    make_user("alice")
    laptop, phone = app.test_client(), app.test_client()
    for browser in (laptop, phone):
        browser.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    # When the laptop changes the password
    response = laptop.post("/auth/account", data={"current_password": PASSWORD,
                                                  "password": NEW_PASSWORD,
                                                  "password2": NEW_PASSWORD})  # fmt: skip
    assert response.status_code == 302
    # Then the phone's next page, public or not, says why it is signed out, in one message
    page = phone.get(first_page, follow_redirects=True).text
    assert page.count(SIGN_IN_ENDED) == 1 and PLEASE_SIGN_IN not in page
    assert 'class="alert alert-warning' in page
    # And only once: later pages are a signed-out visitor's, as usual
    assert SIGN_IN_ENDED not in phone.get("/explore").text
    assert PLEASE_SIGN_IN in phone.get("/messages", follow_redirects=True).text
    # While a browser that signed out itself is not told it was signed out elsewhere
    laptop.post("/auth/logout")
    assert SIGN_IN_ENDED not in laptop.get("/messages", follow_redirects=True).text


def test_a_csrf_token_from_before_sign_in_is_refused_after_it(make_app, make_user):
    # Given a visitor who took a CSRF token from the login page
    app = make_app(WTF_CSRF_ENABLED=True)
    make_user("alice")
    client = app.test_client()
    page = client.get("/auth/login").get_data(as_text=True)
    anonymous_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    login = {"username": "alice", "password": PASSWORD, "csrf_token": anonymous_token}
    assert client.post("/auth/login", data=login).status_code == 302
    # When that token is used in the signed-in session
    response = client.post("/", data={"post": "planted", "csrf_token": anonymous_token})
    # Then it is refused: the session that got it is gone
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)


def test_ten_wrong_passwords_for_one_account_then_429(client, make_user):
    # Given alice, and someone guessing her password
    make_user("alice")
    for attempt in range(10):
        response = client.post(
            "/auth/login", data={"username": "alice", "password": f"guess-{attempt}"}
        )
        assert response.status_code == 400
    # When they try once more, even with the right password and another spelling of her name
    response = client.post("/auth/login", data={"username": "ALICE", "password": PASSWORD})
    # Then they are told to wait, in the site's look and in Retry-After
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    html = response.get_data(as_text=True)
    assert "Too many attempts" in html and 'class="navbar' in html
    # And another account is not affected
    make_user("bob")
    assert (
        client.post("/auth/login", data={"username": "bob", "password": PASSWORD}).status_code
        == 302
    )


def test_wrong_current_passwords_on_the_account_page_are_throttled_too(client, auth):
    # Given a signed-in session whose holder does not know the password
    auth.signed_in("alice")
    form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    for attempt in range(9):  # the sign-in spent the first of the account's ten checks
        response = client.post("/auth/account", data={**form, "current_password": f"g-{attempt}"})
        assert response.status_code == 400
    # When it tries once more, even rightly
    response = client.post("/auth/account", data={**form, "current_password": PASSWORD})
    # Then it is told to wait
    assert response.status_code == 429
    client.post("/auth/logout")
    assert auth.login("alice").status_code == 429  # the account's one budget, whichever form


def test_registration_is_throttled_per_address(client, app):
    limit = int(app.config["REGISTER_LIMIT_PER_ADDRESS"].split()[0])
    for n in range(limit):
        form = {"username": f"user{n}", "email": f"user{n}@example.com", "password": PASSWORD,
                "password2": PASSWORD}  # fmt: skip
        assert client.post("/auth/register", data=form).status_code == 302
    assert client.post("/auth/register", data={}).status_code == 429


def test_sign_in_still_works_while_redis_is_down(make_app, make_user):
    # Given the throttle's Redis unreachable
    app = make_app(THROTTLE_STORAGE_URI="redis://127.0.0.1:1/0")
    make_user("alice")
    client = app.test_client()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1).ping()
    # Then signing in works, unthrottled meanwhile
    assert client.get("/auth/login").status_code == 200
    ok = client.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 302


def test_sign_in_still_works_while_the_sentinels_are_silent(make_app, make_user, tarpit):
    # Given the broker's Redis behind sentinels that accept connections and never answer
    app = make_app(REDIS_SENTINELS=[f"127.0.0.1:{tarpit.port}"] * 2)
    make_user("alice")
    client = app.test_client()
    answers = {}

    def sign_in() -> None:
        form = {"username": "alice", "password": PASSWORD}
        answers["sign-in"] = client.post("/auth/login", data=form).status_code
        answers["health"] = client.get("/healthz").status_code

    # When alice signs in: the throttle asks the sentinels for the master, and gives up
    asker = threading.Thread(target=sign_in, daemon=True)
    asker.start()
    asker.join(timeout=30)
    # Then she is in, unthrottled meanwhile, and health says the broker is away
    assert not asker.is_alive(), "signing in hung on silent sentinels"
    assert answers == {"sign-in": 302, "health": 503}


def test_anonymous_json_clients_get_a_json_401(client):
    response = client.get("/tasks/" + "0" * 32, headers=JSON)
    assert response.status_code == 401
    assert response.get_json()["error"] == "Unauthorized"


def test_anonymous_browsers_are_sent_to_the_login_page_and_back(client):
    response = client.get("/explore")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=%2Fexplore"


def test_error_pages_keep_the_exceptions_headers(client):
    response = client.delete("/auth/login")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


@pytest.mark.parametrize(("proxies", "separate"), [(1, True), (0, False)])
def test_the_address_throttle_counts_the_client_the_proxy_names(make_app, proxies, separate):
    # Given registration limited to one per address, behind `proxies` trusted proxies
    app = make_app(PROXY_COUNT=proxies, REGISTER_LIMIT_PER_ADDRESS="1 per hour")
    client = app.test_client()

    def register(forwarded_for: str):
        name = f"user{forwarded_for[-1]}"
        form = {"username": name, "email": f"{name}@example.com", "password": PASSWORD,
                "password2": PASSWORD}  # fmt: skip
        return client.post("/auth/register", data=form, headers={"X-Forwarded-For": forwarded_for})

    # When two clients register through the proxy
    assert register("203.0.113.1").status_code == 302
    second = register("203.0.113.2")
    # Then with a trusted proxy each client has its own count; without, the header is ignored
    assert second.status_code == (302 if separate else 429)
