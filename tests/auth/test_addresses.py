"""Confirmed addresses: a new address gets nothing but its confirmation link (and reset links)
until it is confirmed; a change of address needs the password, takes effect once the new
address is confirmed, and tells the old one; every bad link or form changes nothing."""

import re
from email.message import Message
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.services import wait_until
from microblog.auth.models import User
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.recovery import tokens
from tests.support.data import insert_posts
from tests.support.web import JSON, PASSWORD, signed

CONFIRM = "Confirm your microblog email address"
# Each generated example reuses the test's app and database: nothing it sends stores anything.
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NOTICE = "Your microblog email address is being changed"
EXPORTED = "Your microblog export is ready"


def text_of(message: Message) -> str:
    return "".join(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/plain"
    )


def confirmation_link(message: Message) -> str:
    return re.search(r"https?://[^/\s]+(/auth/confirm/\S+)", text_of(message))[1]


def mails(mailbox: list, to: str, subject: str) -> list[Message]:
    return [m for m in mailbox if m["To"] == to and m["Subject"] == subject]


def wait_for_mail(mailbox: list, to: str, subject: str) -> Message:
    wait_until(lambda: mails(mailbox, to, subject), 30, f"{subject!r} to {to}")
    return mails(mailbox, to, subject)[0]


def user_state(app: Flask, username: str) -> tuple:
    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(username=username))
        return user.email, user.email_confirmed, user.pending_email


def register(client, username: str, email: str):
    return client.post("/auth/register", data={"username": username, "email": email,
                       "password": PASSWORD, "password2": PASSWORD})  # fmt: skip


def sign_in(client, username: str) -> None:
    assert (
        client.post("/auth/login", data={"username": username, "password": PASSWORD}).status_code
        == 302
    )


def confirm(client, link: str):
    """Open a confirmation link and press its button."""
    shown = client.get(link)
    assert shown.status_code == 200, shown.get_data(as_text=True)[:2000]
    return client.post(link)


def export(app, client, recorded_events) -> dict:
    started = client.post("/exports", headers=JSON)
    assert started.status_code == 202, started.get_json()
    return recorded_events.finished(started.get_json()["task_id"]).data


def test_a_new_address_gets_only_its_confirmation_until_it_is_confirmed(
    app, client, worker, mailbox, recorded_events
):
    # Given ann registered with her address, and signed in
    assert register(client, "ann", "ann@example.com").status_code == 302
    link = confirmation_link(wait_for_mail(mailbox, "ann@example.com", CONFIRM))
    sign_in(client, "ann")
    with app.app_context():
        insert_posts(1, ["hello"])
    # When she exports before confirming
    finished = export(app, client, recorded_events)
    # Then the archive is there to download, the card says the email waits, no email went
    assert finished["status"] == "succeeded"
    assert "your email address is not confirmed yet" in client.get("/").get_data(as_text=True)
    assert client.get(finished["url"]).status_code == 200
    assert [m["Subject"] for m in mailbox] == [CONFIRM]
    # When she confirms, then exports again
    done = confirm(client, link)
    assert done.status_code == 302 and done.headers["Location"] == "/auth/account"
    assert user_state(app, "ann") == ("ann@example.com", True, None)
    export(app, client, recorded_events)
    # Then the export is emailed
    wait_for_mail(mailbox, "ann@example.com", EXPORTED)
    assert [m["Subject"] for m in mailbox] == [CONFIRM, EXPORTED]


def test_a_used_reset_link_confirms_the_address(app, make_user):
    make_user("ann", confirmed=False)
    client = app.test_client()
    with app.app_context():
        link = "/auth/reset_password/" + tokens.make_token(db.session.get(User, 1))
    new = "brand-new-horse-8"
    assert client.post(link, data={"password": new, "password2": new}).status_code == 302
    assert user_state(app, "ann") == ("ann@example.com", True, None)


def forged(secret: str, payload, age: int = 0) -> str:
    return signed(secret, tokens.CONFIRM_SALT, payload, age)


def test_bad_confirmation_links_get_a_clear_page_and_change_nothing(app, make_user):
    # Given ann, unconfirmed, who asked to change address; and bob
    ann = make_user("ann", confirmed=False)
    make_user("bob")
    with app.app_context():
        user = db.session.get(User, ann)
        user.pending_email = "ann@new.example"
        db.session.commit()
        good = tokens.make_confirmation_token(user, "ann@example.com")
        stale = tokens.make_confirmation_token(user, "ann@older.example")
    cases = {
        "garbage": ("not-a-token", "not a confirmation link"),
        "truncated": (good[:-5], "not a confirmation link"),
        "another secret": (forged("another", [ann, "ann@example.com"]), "not a confirmation"),
        "a reset token": (forged("test", [ann, "x"]).replace("a", "b", 1), "not a confirmation"),
        "expired": (forged("test", [ann, "ann@example.com"], age=49 * 3600), "has expired"),
        "no such user": (forged("test", [ann + 100, "ann@example.com"]), "not a confirmation"),
        "odd payload": (forged("test", {"id": ann}), "not a confirmation link"),
        "a boolean id": (forged("test", [True, "ann@example.com"]), "not a confirmation link"),
        "an id past the column": (forged("test", [2**63, "x@example.com"]), "not a confirmation"),
        "address since changed": (stale, "no longer asks for"),
        "huge": ("a" * 5000, "not a confirmation link"),
    }
    client = app.test_client()
    for name, (token, message) in cases.items():
        for response in (
            client.get(f"/auth/confirm/{token}"),
            client.post(f"/auth/confirm/{token}"),
        ):
            assert response.status_code == 400, name
            assert message in response.get_data(as_text=True), name
    # And another user's link, opened while signed in as bob, is refused too
    sign_in(client, "bob")
    assert client.post(f"/auth/confirm/{good}").status_code == 400
    assert user_state(app, "ann") == ("ann@example.com", False, "ann@new.example")
    # When ann uses it herself, it works once
    other = app.test_client()
    assert confirm(other, f"/auth/confirm/{good}").status_code == 302
    reused = other.post(f"/auth/confirm/{good}")
    assert reused.status_code == 400 and "confirmed already" in reused.get_data(as_text=True)
    assert user_state(app, "ann") == ("ann@example.com", True, "ann@new.example")


@PROPERTY
@given(token=st.text(min_size=1).filter(lambda t: "/" not in t and t not in {".", ".."}))
def test_any_token_gets_a_clear_answer_never_an_error(app, token):
    response = app.test_client().get("/auth/confirm/" + quote(token, safe=""))
    assert response.status_code == 400, (token, response.status_code)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@PROPERTY
@given(payload=JSON_VALUES | st.tuples(JSON_VALUES, JSON_VALUES).map(list))
def test_any_payload_signed_with_the_real_key_gets_a_clear_answer(app, payload):
    # Whatever the signed value holds (booleans for ids, ids past the column, odd shapes)
    response = app.test_client().post("/auth/confirm/" + forged("test", payload))
    assert response.status_code == 400, (payload, response.status_code)


@pytest.fixture
def ann_signed_in(client, make_user) -> int:
    user_id = make_user("ann")
    make_user("bob")
    sign_in(client, "ann")
    return user_id


def change(client, email: str, password: str = PASSWORD, **extra):
    return client.post("/auth/email", data={"address-email": email,
                       "address-current_password": password, **extra})  # fmt: skip


@pytest.mark.parametrize(
    "email, password, message",
    [
        ("ann@new.example", "wrong-horse-1", "not your current password"),
        ("BOB@Example.COM", PASSWORD, "already exists"),
        ("ANN@example.com", PASSWORD, "already your address"),
        ("not an address", PASSWORD, "Invalid email"),
        ("a" * 200 + "@example.com", PASSWORD, "120 characters"),
        ("", PASSWORD, "This field is required"),
        ("ann\x00@new.example", PASSWORD, ""),
    ],
)
def test_a_bad_change_of_address_is_refused_and_changes_nothing(
    app, client, ann_signed_in, mailbox, email, password, message
):
    response = change(client, email, password)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert user_state(app, "ann") == ("ann@example.com", True, None)


def test_a_forged_change_of_address_is_refused(make_app, make_user):
    make_user("ann")
    guarded = make_app(WTF_CSRF_ENABLED=True)
    client = guarded.test_client()
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
    signed_in = client.post("/auth/login", data={"username": "ann", "password": PASSWORD,
                            "csrf_token": token})  # fmt: skip
    assert signed_in.status_code == 302
    assert change(client, "ann@new.example").status_code == 400  # no token
    assert user_state(guarded, "ann") == ("ann@example.com", True, None)


def test_a_change_of_address_takes_effect_once_the_new_one_is_confirmed(
    app, client, ann_signed_in, worker, mailbox
):
    # When ann asks to change her address, with her password
    response = change(client, "Ann@New.example")
    assert response.status_code == 302
    # Then nothing changes yet: the new address gets a link, the old one a notice without link
    assert user_state(app, "ann") == ("ann@example.com", True, "ann@new.example")
    link = confirmation_link(wait_for_mail(mailbox, "ann@new.example", CONFIRM))
    notice = text_of(wait_for_mail(mailbox, "ann@example.com", NOTICE))
    assert "new.example" in notice and "http" not in notice
    # When she confirms it
    assert confirm(client, link).status_code == 302
    # Then it is her address, confirmed; the link is spent
    assert user_state(app, "ann") == ("ann@new.example", True, None)
    assert client.post(link).status_code == 400


def test_whoever_confirms_an_address_first_gets_it(app, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    links = {}
    with app.app_context():
        for user_id in (ann, bob):
            user = db.session.get(User, user_id)
            user.pending_email = "shared@example.com"
            links[user_id] = "/auth/confirm/" + tokens.make_confirmation_token(
                user, user.pending_email
            )
        db.session.commit()
    assert confirm(app.test_client(), links[ann]).status_code == 302
    late = confirm(app.test_client(), links[bob])
    assert late.status_code == 400 and "Another account has this address" in late.get_data(
        as_text=True
    )
    assert user_state(app, "bob") == ("bob@example.com", True, "shared@example.com")


def test_the_link_can_be_sent_again_a_few_times_an_hour(app, client, make_user, worker, mailbox):
    make_user("ann", confirmed=False)
    sign_in(client, "ann")
    answers = [client.post("/auth/confirmation").status_code for _ in range(6)]
    assert answers == [302] * 5 + [429]
    wait_until(lambda: len(mails(mailbox, "ann@example.com", CONFIRM)) == 5, 30, "five links")


def test_a_confirmed_address_needs_no_link(app, client, ann_signed_in):
    response = client.post("/auth/confirmation", follow_redirects=True)
    assert "confirmed already" in response.get_data(as_text=True)


def test_the_account_page_says_whether_the_address_is_confirmed(app, client, make_user):
    make_user("ann", confirmed=False)
    sign_in(client, "ann")
    page = client.get("/auth/account").get_data(as_text=True)
    assert "not confirmed yet" in page and "Send the link again" in page
    with app.app_context():
        launch(export_posts, 1)  # a job's card renders beside it
    assert client.get("/auth/account").status_code == 200
