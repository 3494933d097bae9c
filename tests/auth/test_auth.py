"""Registration, login, logout and the ``next`` redirect."""

import pytest
from sqlalchemy import select

from microblog.auth.models import User
from microblog.extensions import db
from microblog.urls import safe_next
from tests.support.web import PASSWORD

GOOD_FORM = {
    "username": "carol",
    "email": "carol@example.com",
    "password": PASSWORD,
    "password2": PASSWORD,
}


def test_registering_signs_you_in_on_a_fresh_session_and_lands_on_your_home(client, app):
    # Given a visitor whose session holds something from before (a planted or old cookie)
    client.get("/auth/register")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    # When they register
    response = client.post("/auth/register", data=GOOD_FORM)
    # Then they land on their home, signed in, welcomed once, on a session of their own
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    with client.session_transaction() as session:
        assert "planted" not in session
    home = client.get("/").get_data(as_text=True)
    assert "Hi, carol!" in home and home.count("Welcome, carol!") == 1
    assert "Please sign in" not in home
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "carol"))
        assert user.email == "carol@example.com"
        assert user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "alice", "That username is taken"),
        ("username", "a b", "Use letters, digits"),
        ("username", "alice\n", "Use letters, digits"),
        ("username", "alice.", "Use letters, digits"),
        ("username", "Alice", "That username is taken"),
        ("username", "ＡＬＩＣＥ", "That username is taken"),
        ("username", "al\x00ice", "Remove the control characters"),
        ("email", "Alice@Example.COM ", "An account with that email already exists"),
        ("username", "", "This field is required"),
        ("email", "ALICE@example.com", "An account with that email already exists"),
        ("email", "not-an-email", "Invalid email address"),
        ("password", "short1", "at least 8 characters"),
        ("password", "lettersonly", "Mix letters with digits"),
        ("password2", "something-else-1", "The passwords do not match"),
        ("password", "a-1" * 43, "at most 128 characters"),
    ],
)
def test_register_refuses_bad_input_with_a_clear_message(
    client, make_user, app, field, value, message
):
    make_user("alice")
    response = client.post("/auth/register", data={**GOOD_FORM, field: value})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "carol")) is None


def test_login_with_right_password_signs_in(client, auth):
    auth.signed_in("alice")
    response = client.get("/")
    assert response.status_code == 200
    assert "Hi, alice!" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong-pass-1"), ("nobody", PASSWORD)]
)
def test_login_with_wrong_credentials_is_refused(client, auth, make_user, username, password):
    make_user("alice")
    response = auth.login(username, password)
    assert response.status_code == 400
    assert "Invalid username or password" in response.get_data(as_text=True)
    assert client.get("/explore").status_code == 302


def test_remember_me_sets_a_persistent_cookie(client, auth, make_user):
    make_user("alice")
    response = auth.login(remember_me="y")
    assert any(c.startswith("remember_token=") for c in response.headers.getlist("Set-Cookie"))


def test_login_without_remember_me_sets_no_remember_cookie(client, auth, make_user):
    make_user("alice")
    response = auth.login()
    assert not any(c.startswith("remember_token=") for c in response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/explore", "/explore"),
        ("/user/alice?page=2", "/user/alice?page=2"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("explore", "/"),
    ],
)
def test_login_follows_next_only_to_same_site_paths(client, auth, make_user, next_url, expected):
    make_user("alice")
    response = client.post(
        "/auth/login",
        query_string={"next": next_url},
        data={"username": "alice", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_safe_next_rejects_control_characters():
    assert safe_next("/\x0a/evil.example") is None


def test_logout_is_post_only(client, auth):
    auth.signed_in("alice")
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/").status_code == 200


def test_logout_signs_out(client, auth):
    auth.signed_in("alice")
    response = auth.logout()
    assert response.status_code == 302
    assert client.get("/explore").status_code == 302
    assert "Welcome to Microblog" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/explore", "/user/alice", "/edit_profile", "/messages"])
def test_login_required(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_signed_in_user_visiting_login_goes_home(client, auth):
    auth.signed_in("alice")
    assert client.get("/auth/login").headers["Location"] == "/"
