"""A revoked sign-in stops hearing: its open streams end within seconds, through real gunicorn."""

import pytest
import requests

from microblog.jobs import events
from microblog.live import channel as live
from tests.support.data import SSEReader
from tests.support.servers import on_every_events_topology
from tests.support.web import PASSWORD, live_session
from tests.support.wire import csrf_token

# On a Redis Cluster the order to close a sign-in's streams travels by sharded pub/sub too.
pytestmark = on_every_events_topology

WITHIN_SECONDS = 5
SIGN_IN_ENDED_TEXT = (
    "Your sign-in has ended: you signed out elsewhere, your password was changed, or it "
    "expired. Please sign in again."
)


def open_stream(base_url: str, session: requests.Session, path: str = "/stream") -> SSEReader:
    """Open a stream and wait until it is live (the retry hint follows the subscription)."""
    response = session.get(base_url + path, stream=True, timeout=30)
    assert response.status_code == 200, response.text[:300]
    reader = SSEReader(response)
    reader.wait_for(lambda r: r.retry is not None, 30, "the retry hint")
    return reader


def post_form(base_url: str, session: requests.Session, path: str, **data) -> None:
    token = csrf_token(session, base_url, "/auth/account")
    response = session.post(
        base_url + path, data={"csrf_token": token, **data}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302, response.text[:300]


def revoke(base_url: str, how: str, browser: requests.Session, elsewhere: requests.Session):
    if how == "logout":
        post_form(base_url, browser, "/auth/logout")
    elif how == "password change elsewhere":
        new = "another-horse-42"
        post_form(base_url, elsewhere, "/auth/account",
                  current_password=PASSWORD, password=new, password2=new)  # fmt: skip
    else:
        post_form(base_url, elsewhere, "/auth/sign_out_everywhere")


@pytest.mark.parametrize("how", ["logout", "password change elsewhere", "sign out everywhere"])
def test_a_revoked_sign_in_closes_its_open_stream(gunicorn_server, live_user, how):
    # Given a browser with its stream open, and the same user signed in on another device
    _, username = live_user("revoked")
    browser = live_session(gunicorn_server, username)
    elsewhere = live_session(gunicorn_server, username)
    old_cookies = browser.cookies.copy()
    reader = open_stream(gunicorn_server, browser)
    try:
        # When the browser's sign-in is revoked
        revoke(gunicorn_server, how, browser, elsewhere)
        # Then its stream ends within seconds, its last event saying why and where to sign in
        reader.wait_for_end(WITHIN_SECONDS)
    finally:
        reader.close()
    assert reader.events[-1]["event"] == "session.ended"
    assert reader.events[-1]["data"] == {
        "message": SIGN_IN_ENDED_TEXT, "sign_in": "Sign in", "sign_in_url": "/auth/login"
    }  # fmt: skip
    # And a tab that still holds the old cookie is told the same on its retry, once; then
    # its retries are refused
    stale = requests.Session()
    stale.cookies.update(old_cookies)
    retry = stale.get(gunicorn_server + "/stream", timeout=10)
    assert retry.status_code == 200 and "event:session.ended" in retry.text
    assert stale.get(gunicorn_server + "/stream", timeout=10).status_code == 401


def test_a_logout_leaves_the_other_sign_ins_streams_open(gunicorn_server, live_user, live_app):
    # Given one user's streams open on two devices
    user_id, username = live_user("kept")
    leaving, staying = (live_session(gunicorn_server, username) for _ in range(2))
    closed, kept = open_stream(gunicorn_server, leaving), open_stream(gunicorn_server, staying)
    try:
        # When one device logs out
        post_form(gunicorn_server, leaving, "/auth/logout")
        closed.wait_for_end(WITHIN_SECONDS)
        # Then the other still hears the user's events
        with live_app.app_context():
            live.publish(user_id, events.PROGRESS, {"task_id": "kept", "progress": 1})
        assert kept.wait_for_events(1)[0]["data"]["task_id"] == "kept"
        assert not kept.ended.is_set()
    finally:
        closed.close()
        kept.close()


def test_an_operator_who_loses_the_role_stops_hearing_every_users_events(
    gunicorn_server, live_user, live_app
):
    # Given an admin with the operators' stream open
    _, username = live_user("operator")
    runner = live_app.test_cli_runner()
    assert runner.invoke(args=["users", "grant-admin", username]).exit_code == 0
    operator = live_session(gunicorn_server, username)
    reader = open_stream(gunicorn_server, operator, "/admin/stream")
    try:
        # When the role is taken back
        result = runner.invoke(args=["users", "revoke-admin", username])
        assert result.exit_code == 0, result.output
        # Then the stream ends within seconds, and reopening it finds no such page
        reader.wait_for_end(WITHIN_SECONDS)
    finally:
        reader.close()
    assert operator.get(gunicorn_server + "/admin/stream", timeout=10).status_code == 404


def test_an_operators_logout_closes_their_operators_stream(gunicorn_server, live_user, live_app):
    _, username = live_user("operator")
    assert live_app.test_cli_runner().invoke(args=["users", "grant-admin", username]).exit_code == 0
    operator = live_session(gunicorn_server, username)
    reader = open_stream(gunicorn_server, operator, "/admin/stream")
    try:
        post_form(gunicorn_server, operator, "/auth/logout")
        reader.wait_for_end(WITHIN_SECONDS)
    finally:
        reader.close()
