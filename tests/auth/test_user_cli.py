"""Operators' account tools: ``flask users set-password``, ``sign-out`` and ``show``; and
``flask shell``'s context."""

import re

from microblog.auth.models import User
from microblog.extensions import db

NEW_PASSWORD = "operator-set-77"


def signed_in(client) -> bool:
    return re.search(r">Profile<", client.get("/explore").get_data(as_text=True)) is not None


def test_set_password_asks_twice_and_signs_out_every_device(app, runner, client, auth):
    # Given alice signed in
    auth.signed_in("alice")
    # When an operator sets her password, typing it twice
    result = runner.invoke(
        args=["users", "set-password", "alice"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    # Then it is set, never echoed, and her browser is signed out
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert "every sign-in is closed" in result.output
    with app.app_context():
        assert db.session.scalar(db.select(User)).check_password(NEW_PASSWORD)
    assert not signed_in(client)
    assert auth.login("alice", NEW_PASSWORD).status_code == 302


def test_set_password_refuses_a_mismatch_or_a_weak_password_and_changes_nothing(
    app, runner, make_user
):
    make_user("alice")
    mismatch = runner.invoke(
        args=["users", "set-password", "alice"], input=f"{NEW_PASSWORD}\nother-one-1\n"
    )
    assert "do not match" in mismatch.output.lower()
    weak = runner.invoke(args=["users", "set-password", "alice"], input="short\nshort\n")
    assert weak.exit_code != 0 and "at least 8 characters" in weak.output
    with app.app_context():
        assert not db.session.scalar(db.select(User)).check_password(NEW_PASSWORD)


def test_the_password_is_never_taken_from_the_command_line(runner, make_user):
    make_user("alice")
    result = runner.invoke(args=["users", "set-password", "alice", NEW_PASSWORD])
    assert result.exit_code != 0


def test_sign_out_closes_every_sign_in_and_show_counts_them(app, runner, auth, client):
    auth.signed_in("alice")
    other = app.test_client()
    assert other.post("/auth/login", data={"username": "alice", "password": "correct-horse-9"}
                      ).status_code == 302  # fmt: skip
    shown = runner.invoke(args=["users", "show", "alice"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"sign-ins:\s+2", shown.output)
    assert re.search(r"created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown.output)
    assert re.search(r"admin:\s+no", shown.output) and "last seen:" in shown.output

    result = runner.invoke(args=["users", "sign-out", "alice"])
    assert result.exit_code == 0 and "2 sign-in(s) closed" in result.output
    assert not signed_in(client) and not signed_in(other)
    assert re.search(r"sign-ins:\s+0", runner.invoke(args=["users", "show", "alice"]).output)


def test_the_tools_name_an_unknown_user(runner, app):
    for command in ("set-password", "sign-out", "show"):
        result = runner.invoke(args=["users", command, "nobody"], input="x\nx\n")
        assert result.exit_code != 0 and "there is no user 'nobody'" in result.output


def test_flask_shell_starts_with_the_database_and_the_models(app):
    with app.app_context():  # as `flask shell` has
        context = app.make_shell_context()
    assert context["db"] is db
    for name in ("User", "Post", "Message", "Task", "SignIn", "Archive", "sa", "so"):
        assert name in context, name
    with app.app_context():
        assert context["db"].session.scalar(context["sa"].select(context["User"])) is None
