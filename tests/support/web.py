"""Talking to the app as a browser or a script does: sign-ins, JSON requests, an export."""

import functools
import re
import time

import requests
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from werkzeug.security import generate_password_hash

PASSWORD = "correct-horse-9"
JSON = {"Accept": "application/json"}  # what scripts send: answers come as JSON
# Every page a signed-in operator can open ({me} and {other} are usernames), and every page
# of an anonymous visitor: the pages the language and accessibility checks go through.
SIGNED_IN_PAGES = [
    "/",
    "/explore",
    "/user/{me}",
    "/user/{other}",
    "/user/{me}/followers",
    "/user/{me}/following",
    "/messages",
    "/send_message/{other}",
    "/search?q=hola",
    "/search?q=" + "x" * 201,
    "/edit_profile",
    "/auth/account",
    "/admin/tasks",
    "/admin/tasks?status=failed&older_than=soon",
    "/nowhere",
]
ANONYMOUS_PAGES = ["/", "/auth/login", "/auth/register", "/auth/reset_password_request",
                   "/auth/reset_password/not-a-link", "/explore", "/nowhere"]  # fmt: skip


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    """Return a hash of ``password`` for the suite's own users: made once, by a cheap PBKDF2,
    so that neither making a user nor signing in costs a scrypt (the sign-in verifies by the
    method the hash names). The product's own hashing is what the tests of registration,
    reset and set-password go through."""
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


class AuthActions:
    def __init__(self, client: FlaskClient, make_user) -> None:
        self._client = client
        self._make_user = make_user

    def login(self, username: str = "alice", password: str = PASSWORD, **extra):
        return self._client.post(
            "/auth/login", data={"username": username, "password": password, **extra}
        )

    def signed_in(self, username: str = "alice") -> int:
        """Create ``username`` and sign this client in as that user; return the user's id."""
        user_id = self._make_user(username)
        response = self.login(username)
        assert response.status_code == 302, response.data
        return user_id

    def logout(self):
        return self._client.post("/auth/logout")


def live_session(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """Return a requests session signed in as ``username`` through the real login form."""
    session = requests.Session()
    page = session.get(base_url + "/auth/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(
        base_url + "/auth/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return session


def start_export(session: requests.Session, base_url: str) -> None:
    page = session.get(base_url + "/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(
        base_url + "/exports", data={"csrf_token": token}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text


def signed(secret: str, salt: str, payload, age: int = 0) -> str:
    """Return ``payload`` signed as the app signs its links' tokens, made ``age`` seconds ago."""

    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return URLSafeTimedSerializer(secret, salt=salt, signer=Backdated).dumps(payload)
