"""Password reset by email: the link is sent by a worker, works once, and tells no one who is
registered."""

import re
import statistics
import time
from email.message import Message

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from devkit.pytest_plugin import in_process_worker
from devkit.services import free_port, wait_until
from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.recovery import tokens
from tests.support.servers import running_worker
from tests.support.web import PASSWORD, live_session, signed

NEW_PASSWORD = "brand-new-horse-8"
REQUEST = "/auth/reset_password_request"


def parts(message: Message) -> dict[str, str]:
    """Return the message's text parts by content type."""
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_maintype() == "text"
    }


def reset_link(message: Message) -> str:
    """Return the path of the reset link in the message's plain-text part."""
    return re.search(r"https?://[^/\s]+(/auth/reset_password/\S+)", parts(message)["text/plain"])[1]


def ask_for_link(client: FlaskClient, email: str):
    return client.post(REQUEST, data={"email": email})


def mails_to(mailbox: list, address: str, subject: str) -> list[Message]:
    return [m for m in mailbox if m["To"] == address and m["Subject"] == subject]


def wait_for_mail(mailbox: list, address: str, subject: str, count: int = 1) -> Message:
    wait_until(lambda: len(mails_to(mailbox, address, subject)) >= count, 30,
               f"{count} email(s) {subject!r} to {address}")  # fmt: skip
    return mails_to(mailbox, address, subject)[count - 1]


def signed_in_as(client: FlaskClient) -> str | None:
    page = client.get("/explore").get_data(as_text=True)
    match = re.search(r'href="/user/([^"]+)">Profile<', page)
    return match[1] if match else None


def password_works(app: Flask, username: str, password: str) -> bool:
    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(username=username))
        return user.check_password(password)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "THROTTLE_ENABLED": False}


def test_the_emailed_link_resets_the_password_once_and_signs_out_every_device(
    app, client, auth, mailbox
):
    # Given alice signed in on one browser, and a stranger's browser asking for her link
    auth.signed_in("alice")
    stranger = app.test_client()
    with in_process_worker(app):
        response = ask_for_link(stranger, "Alice@Example.com")
        assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
        # Then the worker emails her a link, in a plain-text and an HTML part
        email = wait_for_mail(mailbox, "alice@example.com", "Reset your microblog password")
        assert set(parts(email)) == {"text/plain", "text/html"}
        link = reset_link(email)
        assert link in parts(email)["text/html"]
        # When the link's form is shown and sent with a new password
        form = stranger.get(link)
        assert form.status_code == 200 and "Choose a new password" in form.get_data(as_text=True)
        assert form.headers["Cache-Control"] == "no-store"
        done = stranger.post(link, data={"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
        assert done.status_code == 302
        # Then a "password changed" email follows
        changed = wait_for_mail(mailbox, "alice@example.com", "Your microblog password was changed")
        assert REQUEST in parts(changed)["text/plain"]
    # And the new password works, the browser that reset it is signed in, the old one is not
    assert password_works(app, "alice", NEW_PASSWORD)
    assert signed_in_as(stranger) == "alice"
    assert signed_in_as(client) is None
    # And the link works once
    again = stranger.post(link, data={"password": "third-horse-9", "password2": "third-horse-9"})
    assert again.status_code == 400
    assert "used already" in again.get_data(as_text=True)
    assert password_works(app, "alice", NEW_PASSWORD)


def test_a_newer_link_kills_none_but_a_reset_kills_every_older_link(app, make_user, mailbox):
    make_user("alice")
    client = app.test_client()
    with in_process_worker(app):
        ask_for_link(client, "alice@example.com")
        first = reset_link(
            wait_for_mail(mailbox, "alice@example.com", "Reset your microblog password")
        )
        ask_for_link(client, "alice@example.com")
        second = reset_link(
            wait_for_mail(mailbox, "alice@example.com", "Reset your microblog password", 2)
        )
    assert client.get(first).status_code == 200  # asking again did not kill the first
    response = client.post(second, data={"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    old = app.test_client().get(first)
    assert old.status_code == 400 and "used already" in old.get_data(as_text=True)


def test_a_password_changed_on_the_account_page_kills_the_link(app, client, auth, mailbox):
    auth.signed_in("alice")
    with app.app_context():
        link = "/auth/reset_password/" + tokens.make_token(
            db.session.scalar(db.select(User).filter_by(username="alice"))
        )
    changed = client.post("/auth/account", data={"current_password": PASSWORD,
                          "password": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
    assert changed.status_code == 302
    assert app.test_client().get(link).status_code == 400


def without_tokens(response) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', "", response.get_data(as_text=True))


def test_an_unknown_address_gets_the_same_answer_and_no_email(app, make_user, mailbox):
    make_user("alice")
    with in_process_worker(app):
        known = app.test_client().post(REQUEST, data={"email": "alice@example.com"},
                                       follow_redirects=True)  # fmt: skip
        unknown = app.test_client().post(REQUEST, data={"email": "nobody@example.com"},
                                         follow_redirects=True)  # fmt: skip
        wait_for_mail(mailbox, "alice@example.com", "Reset your microblog password")
    assert known.status_code == unknown.status_code == 200
    assert known.request.path == unknown.request.path == "/auth/login"
    assert "If an account has that address" in known.get_data(as_text=True)
    # the same page, but for each browser's own CSRF tokens (every page's forms carry one)
    assert without_tokens(known) == without_tokens(unknown)
    assert not [m for m in mailbox if m["To"] == "nobody@example.com"]


def test_known_and_unknown_addresses_take_about_the_same_time(app, make_user):
    # Given an account, and the first request of each kind already made (warm caches)
    make_user("alice")
    client = app.test_client()
    timings = {"alice@example.com": [], "nobody@example.com": []}
    for email in timings:
        ask_for_link(client, email)
    # When each address is asked for 20 times, interleaved
    for _ in range(20):
        for email, times in timings.items():
            start = time.perf_counter()
            response = ask_for_link(client, email)
            times.append(time.perf_counter() - start)
            assert response.status_code == 302
    # Then the medians differ by less than a few milliseconds (the web does the same work:
    # the lookup happens in the worker)
    known, unknown = (statistics.median(times) for times in timings.values())
    assert abs(known - unknown) < max(0.005, 0.5 * min(known, unknown)), (known, unknown)


def test_the_reset_form_asks_again_for_a_bad_password_and_keeps_the_link(app, make_user):
    make_user("alice")
    client = app.test_client()
    with app.app_context():
        link = "/auth/reset_password/" + tokens.make_token(db.session.get(User, 1))
    response = client.post(link, data={"password": "short", "password2": "short"})
    assert response.status_code == 400 and "at least 8 characters" in response.get_data(
        as_text=True
    )
    assert client.get(link).status_code == 200
    assert password_works(app, "alice", PASSWORD)


def forged(secret: str, payload, age: int = 0) -> str:
    return signed(secret, tokens.SALT, payload, age)


def test_bad_links_get_a_clear_page_and_change_nothing(app, make_user):
    user_id = make_user("alice")
    with app.app_context():
        user = db.session.get(User, user_id)
        good = tokens.make_token(user)
        print_ = tokens.fingerprint(user.password_hash)
    cases = {
        "garbage": ("not-a-token", "not a password reset link"),
        "truncated": (good[:-5], "not a password reset link"),
        "another secret": (
            forged("another-secret", [user_id, print_]),
            "not a password reset link",
        ),
        "expired": (forged("test", [user_id, print_], age=31 * 60), "has expired"),
        "no such user": (forged("test", [user_id + 100, print_]), "used already"),
        "odd payload": (forged("test", {"id": user_id}), "not a password reset link"),
        "huge": ("a" * 5000, "not a password reset link"),
    }
    client = app.test_client()
    for name, (token, message) in cases.items():
        for response in (
            client.get(f"/auth/reset_password/{token}"),
            client.post(f"/auth/reset_password/{token}",
                        data={"password": NEW_PASSWORD, "password2": NEW_PASSWORD}),
        ):  # fmt: skip
            assert response.status_code == 400, name
            page = response.get_data(as_text=True)
            assert message in page, name
            assert "Ask for a new link" in page and "Traceback" not in page
    assert password_works(app, "alice", PASSWORD)


def test_a_deleted_account_s_link_is_dead(app, make_user):
    user_id = make_user("alice")
    with app.app_context():
        token = tokens.make_token(db.session.get(User, user_id))
        db.session.delete(db.session.get(User, user_id))
        db.session.commit()
    assert app.test_client().get(f"/auth/reset_password/{token}").status_code == 400


def test_reset_requests_are_throttled_per_address_typed(app, app_config, make_user):
    make_user("alice")
    throttled = create_app({**app_config, "THROTTLE_ENABLED": True})
    try:
        client = throttled.test_client()
        answers = [ask_for_link(client, "ALICE@example.com").status_code for _ in range(6)]
        other = ask_for_link(client, "bob@example.com").status_code
    finally:
        with throttled.app_context():
            db.engine.dispose()
    assert answers == [302] * 5 + [429]
    assert other == 302  # another address has its own budget


def test_with_the_queue_away_the_user_is_told_to_try_again(app_config, make_user, mailbox):
    away = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        response = ask_for_link(away.test_client(), "alice@example.com")
    finally:
        with away.app_context():
            db.engine.dispose()
    assert response.status_code == 503
    assert "try again in a few minutes" in response.get_data(as_text=True)


def test_the_login_page_links_to_the_reset(client):
    assert REQUEST in client.get("/auth/login").get_data(as_text=True)


def csrf_token(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text[:500]
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)[1]


def test_a_reset_through_gunicorn_and_a_dramatiq_worker(
    gunicorn_server, live_env, live_user, smtp_server, tmp_path, live_stacks, database
):
    # Given alice signed in on one browser, and gunicorn with a `dramatiq tasks` worker
    _, username = live_user("reset")
    address = f"{username}@example.com"
    old_browser = live_session(gunicorn_server, username)
    smtp_server.messages.clear()
    with running_worker(live_env, tmp_path / "worker.log"):
        # When another browser asks for a link
        browser = requests.Session()
        url = gunicorn_server + REQUEST
        sent = browser.post(url, data={"email": address, "csrf_token": csrf_token(browser, url)},
                            allow_redirects=False, timeout=10)  # fmt: skip
        assert sent.status_code == 302, sent.text[:500]
        # Then the worker emails it
        link = gunicorn_server + reset_link(
            wait_for_mail(smtp_server.messages, address, "Reset your microblog password")
        )
        # When the link sets a new password
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        done = browser.post(link, data={**form, "csrf_token": csrf_token(browser, link)},
                            allow_redirects=False, timeout=10)  # fmt: skip
        assert done.status_code == 302 and done.headers["Location"] == "/"
        wait_for_mail(smtp_server.messages, address, "Your microblog password was changed")
    # Then the old browser is signed out, the new one signed in, the link dead
    assert (
        old_browser.get(gunicorn_server + "/explore", allow_redirects=False, timeout=10).status_code
        == 302
    )
    assert (
        browser.get(gunicorn_server + "/explore", allow_redirects=False, timeout=10).status_code
        == 200
    )
    reused = browser.get(link, timeout=10)
    assert reused.status_code == 400 and "used already" in reused.text
    # And the new password signs in; the old one does not
    live_session(gunicorn_server, username, NEW_PASSWORD)
    with pytest.raises(AssertionError):
        live_session(gunicorn_server, username, PASSWORD)
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    # And the access log recorded each visit of the link without its token
    token = link.rsplit("/", 1)[1]
    access = live_stacks.gunicorn_log(gunicorn_server)
    assert token not in access and "/auth/reset_password/[token]" in access


def test_every_change_of_password_tells_the_user(app, client, auth, runner, mailbox):
    # Given alice signed in
    auth.signed_in("alice")
    subject = "Your microblog password was changed"
    with in_process_worker(app):
        # When she changes it on the Account page, and an operator sets it again
        changed = client.post("/auth/account", data={"current_password": PASSWORD,
                              "password": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
        assert changed.status_code == 302
        wait_for_mail(mailbox, "alice@example.com", subject)
        result = runner.invoke(
            args=["users", "set-password", "alice"], input="third-horse-9\nthird-horse-9\n"
        )
        assert result.exit_code == 0, result.output
        # Then each change is one email to her
        wait_for_mail(mailbox, "alice@example.com", subject, count=2)
    assert len(mails_to(mailbox, "alice@example.com", subject)) == 2


def test_a_reset_in_a_browser_signed_in_as_another_account_signs_that_one_out(app, make_user):
    # Given bob signed in in a browser, his session cookie copied elsewhere
    make_user("alice")
    make_user("bob")
    browser = app.test_client()
    assert (
        browser.post("/auth/login", data={"username": "bob", "password": PASSWORD}).status_code
        == 302
    )
    copy = app.test_client()
    copy.set_cookie("session", browser.get_cookie("session").value)
    assert signed_in_as(copy) == "bob"
    # When alice's reset link is used in that browser
    with app.app_context():
        link = "/auth/reset_password/" + tokens.make_token(db.session.get(User, 1))
    done = browser.post(link, data={"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    # Then the browser is alice's, and bob's sign-in there is closed for good
    assert signed_in_as(browser) == "alice"
    assert signed_in_as(copy) is None
