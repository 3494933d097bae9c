"""Private messages: only sender and recipient see one, and the unread badge follows live."""

import re

import pytest
import requests
from sqlalchemy import func, select

from microblog.auth.models import User
from microblog.extensions import db
from microblog.messages.models import Message
from tests.support.data import SSEReader
from tests.support.web import live_session


def unread_of(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.unread_messages).where(User.username == username))


def message_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Message))


def badge(page: str) -> tuple[bool, str]:
    """Return whether the page's unread badge is hidden, and its count."""
    found = re.search(r'<span id="unread-badge"[^>]*?( hidden)?><span class="unread-count">(\d+)',
                      page)  # fmt: skip
    assert found, "no unread badge on the page"
    return bool(found[1]), found[2]


@pytest.fixture
def ada(app, make_user):
    """ada signed in on her own client; grace and linus exist."""
    make_user("grace")
    make_user("linus")
    make_user("ada")
    client = app.test_client()
    assert client.post("/auth/login", data={"username": "ada", "password": "correct-horse-9"}
                       ).status_code == 302  # fmt: skip
    return client


def signed_in(app, username: str):
    client = app.test_client()
    response = client.post(
        "/auth/login", data={"username": username, "password": "correct-horse-9"}
    )
    assert response.status_code == 302
    return client


def test_a_message_reaches_its_recipient_only_and_raises_their_badge(app, ada, recorded_events):
    # When ada writes to grace from grace's profile
    profile = ada.get("/user/grace").get_data(as_text=True)
    assert 'href="/send_message/grace"' in profile
    sent = ada.post("/send_message/grace", data={"message": "Hello <b>grace</b>"})
    assert sent.status_code == 302 and sent.headers["Location"] == "/user/grace"
    # Then grace's badge says 1 on any page, her inbox shows it escaped, and it is now read
    grace = signed_in(app, "grace")
    assert badge(grace.get("/explore").get_data(as_text=True)) == (False, "1")
    inbox = grace.get("/messages").get_data(as_text=True)
    assert "Hello &lt;b&gt;grace&lt;/b&gt;" in inbox and ">ada</a>" in inbox
    assert badge(grace.get("/explore").get_data(as_text=True)) == (True, "0")
    # And nobody else sees it: not ada's inbox, not linus's
    for other in (ada, signed_in(app, "linus")):
        assert "Hello" not in other.get("/messages").get_data(as_text=True)
    # And the live channel carried the count to grace only: 1, then 0 when she opened the inbox
    with app.app_context():
        grace_id, ada_id = (db.session.scalar(select(User.id).where(User.username == name))
                            for name in ("grace", "ada"))  # fmt: skip
    recorded_events.wait_for(lambda m: m.type == "message.unread" and m.data["count"] == 0)
    counts = [m.data["count"] for m in recorded_events.of(f"user.{grace_id}")]
    assert counts == [1, 0]
    assert not [m for m in recorded_events.of(f"user.{ada_id}") if m.type == "message.unread"]


def test_the_inbox_pages_newest_first_by_cursor(app, ada):
    app.config["POSTS_PER_PAGE"] = 3
    for n in range(7):
        assert ada.post("/send_message/grace", data={"message": f"note {n}"}).status_code == 302
    grace = signed_in(app, "grace")
    seen, url = [], "/messages"
    while url:
        page = grace.get(url).get_data(as_text=True)
        seen += re.findall(r'class="mb-0 message-body">note (\d)<', page)
        older = re.search(r'rel="next" href="([^"]+)"', page)
        url = older[1].replace("&amp;", "&") if older else None
    assert seen == ["6", "5", "4", "3", "2", "1", "0"]


@pytest.mark.parametrize(
    ("recipient", "status"),
    [("nobody", 404), ("ada", 400), ("ADA", 400), ("ａｄａ", 400), ("gr%00ace", 404),
     ("g" * 5000, 404)],
)  # fmt: skip
def test_unknown_recipients_and_yourself_are_refused(app, ada, recipient, status):
    for method in ("get", "post"):
        response = getattr(ada, method)(f"/send_message/{recipient}", data={"message": "hi"})
        assert response.status_code == status, (method, recipient)
    assert message_count(app) == 0


def test_a_look_alike_name_reaches_the_real_user(app, ada):
    assert ada.post("/send_message/GRACE", data={"message": "hi"}).status_code == 302
    assert unread_of(app, "grace") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [("", "cannot be empty"), ("\u200b \n", "visible character"), ("hi\x00", "control char"),
     ("x" * 1001, "1000 characters")],
)  # fmt: skip
def test_bad_bodies_get_a_field_error_and_store_nothing(app, ada, body, message):
    response = ada.post("/send_message/grace", data={"message": body})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert message_count(app) == 0 and unread_of(app, "grace") == 0


def test_anonymous_visitors_are_sent_to_sign_in(app, make_user):
    make_user("grace")
    client = app.test_client()
    assert client.get("/messages").status_code == 302
    assert client.post("/send_message/grace", data={"message": "hi"}).status_code == 302
    assert message_count(app) == 0


def test_sending_is_throttled_per_user(app, ada):
    statuses = [ada.post("/send_message/grace", data={"message": f"m{n}"}).status_code
                for n in range(31)]  # fmt: skip
    assert statuses == [302] * 30 + [429]
    assert message_count(app) == 30


def test_without_javascript_the_badge_is_right_on_every_load(app, ada):
    ada.post("/send_message/grace", data={"message": "one"})
    ada.post("/send_message/grace", data={"message": "two"})
    grace = signed_in(app, "grace")
    for path in ("/", "/explore", "/user/ada", "/auth/account"):
        assert badge(grace.get(path).get_data(as_text=True)) == (False, "2"), path


def test_a_message_never_reaches_another_user_s_stream(gunicorn_server, live_user, live_app):
    # Given grace's and linus's streams open
    _, grace = live_user("grace")
    _, linus = live_user("linus")
    _, ada = live_user("ada")
    streams = {}
    for name in (grace, linus):
        session = live_session(gunicorn_server, name)
        response = session.get(gunicorn_server + "/stream", stream=True, timeout=30)
        streams[name] = SSEReader(response)
        streams[name].wait_for(lambda r: r.retry is not None, 30, "the retry hint")
    try:
        # When ada writes to grace
        sender = live_session(gunicorn_server, ada)
        page = sender.get(f"{gunicorn_server}/send_message/{grace}", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
        sent = sender.post(f"{gunicorn_server}/send_message/{grace}", timeout=10,
                           data={"message": "for grace", "csrf_token": token})  # fmt: skip
        assert sent.ok
        # Then grace's stream hears her count; linus's hears nothing
        (event,) = streams[grace].wait_for_events(1)
        assert (event["event"], event["data"]) == ("message.unread", {"count": 1})
        heartbeat = len(streams[linus].comments)
        streams[linus].wait_for(lambda r: len(r.comments) > heartbeat, 30, "a heartbeat")
        assert streams[linus].events == []
    finally:
        for reader in streams.values():
            reader.close()


def test_a_count_sent_while_the_stream_was_away_arrives_on_reconnect(gunicorn_server, live_user):
    # Given grace's stream open, then closed after its last event
    _, grace = live_user("grace")
    _, ada = live_user("ada")
    session = live_session(gunicorn_server, grace)
    sender = live_session(gunicorn_server, ada)

    def send(text: str) -> None:
        page = sender.get(f"{gunicorn_server}/send_message/{grace}", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
        assert sender.post(f"{gunicorn_server}/send_message/{grace}", timeout=10,
                           data={"message": text, "csrf_token": token}).ok  # fmt: skip

    first = SSEReader(session.get(gunicorn_server + "/stream", stream=True, timeout=30))
    first.wait_for(lambda r: r.retry is not None, 30, "the retry hint")
    send("one")
    (seen,) = first.wait_for_events(1)
    first.close()
    # When two messages arrive while it is away, and it reconnects with Last-Event-ID
    send("two")
    send("three")
    response = session.get(gunicorn_server + "/stream", stream=True, timeout=30,
                           headers={"Last-Event-ID": seen["id"]})  # fmt: skip
    again = SSEReader(response)
    try:
        events = again.wait_for_events(2)
        # Then it gets exactly what it missed, in order, and nothing twice
        assert [e["data"]["count"] for e in events] == [2, 3]
        assert seen["id"] not in [e["id"] for e in events]
    finally:
        again.close()
    assert requests.get(gunicorn_server + "/healthz", timeout=5).ok


def test_a_cursor_made_from_another_user_s_message_shows_only_your_own(app, ada):
    # Given a message to grace and one to linus, linus's the newer
    ada.post("/send_message/grace", data={"message": "for grace"})
    ada.post("/send_message/linus", data={"message": "for linus"})
    with app.app_context():
        theirs = db.session.scalar(select(Message).where(Message.body == "for linus"))
        cursor = f"{int(theirs.timestamp.timestamp() * 1_000_000) + 1}.{theirs.id + 1}"
    # When grace pages her inbox from a position made of linus's message
    for name in ("before", "after"):
        page = signed_in(app, "grace").get(f"/messages?{name}={cursor}").get_data(as_text=True)
        # Then she never sees linus's message
        assert "for linus" not in page
