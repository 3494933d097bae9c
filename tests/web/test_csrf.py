"""Every state change needs a CSRF token; a forged request changes nothing."""

import re

import pytest
from sqlalchemy import func, select

from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.posts.models import Post


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WTF_CSRF_ENABLED": True}


def token_from(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def test_login_without_token_is_refused(client, make_user):
    make_user("alice")
    response = client.post("/auth/login", data={"username": "alice", "password": "correct-horse-9"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)


def test_forged_post_is_refused_and_changes_nothing(client, make_user, app):
    make_user("alice")
    token = token_from(client, "/auth/login")
    client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": token},
    )
    response = client.post("/", data={"post": "forged"})
    assert response.status_code == 400
    forged_logout = client.post("/auth/logout", data={"csrf_token": "not-a-token"})
    assert forged_logout.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count(Post.id))) == 0
    assert client.get("/").status_code == 200  # still signed in


def test_post_with_token_from_the_page_is_accepted(client, make_user, app):
    make_user("alice")
    token = token_from(client, "/auth/login")
    client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": token},
    )
    response = client.post("/", data={"post": "real", "csrf_token": token_from(client, "/")})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count(Post.id))) == 1


def test_cancel_and_retry_without_a_token_are_refused_and_change_nothing(client, make_user, app):
    alice = make_user("alice")
    token = token_from(client, "/auth/login")
    client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": token},
    )
    with app.app_context():
        task_id = launch(export_posts, alice).id
    for action in ("cancel", "retry"):
        assert client.post(f"/tasks/{task_id}/{action}").status_code == 400
    with app.app_context():
        assert db.session.get(Task, task_id).status == "queued"
        assert db.session.scalar(select(func.count()).select_from(Task)) == 1


def test_starting_a_job_or_acting_as_an_admin_without_a_token_changes_nothing(
    client, make_user, app, runner
):
    make_user("alice")
    runner.invoke(args=["users", "grant-admin", "alice"])
    token = token_from(client, "/auth/login")
    client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": token},
    )
    assert client.post("/tasks/start/count_words").status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Task)) == 0
        task_id = launch(export_posts, 1).id
    assert client.post(f"/admin/tasks/{task_id}/cancel").status_code == 400
    with app.app_context():
        assert db.session.get(Task, task_id).status == "queued"


def sign_in(client, make_user, username: str) -> None:
    make_user(username)
    token = token_from(client, "/auth/login")
    form = {"username": username, "password": "correct-horse-9", "csrf_token": token}
    assert client.post("/auth/login", data=form).status_code == 302


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_an_admin_action_is_404_before_its_csrf_check_for_anyone_but_admins(
    client, make_user, action
):
    path = f"/admin/tasks/{'0' * 32}/{action}"
    assert client.post(path).status_code == 404  # signed out
    sign_in(client, make_user, "alice")
    assert client.post(path).status_code == 404  # not an admin: as if no such page


def test_an_admins_action_without_a_token_is_refused(client, make_user, runner):
    sign_in(client, make_user, "root")
    assert runner.invoke(args=["users", "grant-admin", "root"]).exit_code == 0
    response = client.post(f"/admin/tasks/{'0' * 32}/cancel")
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)


def test_a_forged_message_or_reset_request_changes_nothing(client, make_user, app, mailbox):
    from microblog.messages.models import Message

    make_user("bob")
    make_user("alice")
    token = token_from(client, "/auth/login")
    client.post(
        "/auth/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": token},
    )
    for token in (None, "not-a-token"):
        data = {"message": "forged", **({"csrf_token": token} if token else {})}
        assert client.post("/send_message/bob", data=data).status_code == 400
        reset = {"email": "bob@example.com", **({"csrf_token": token} if token else {})}
        assert app.test_client().post("/auth/reset_password_request", data=reset).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0
    real = {"message": "real", "csrf_token": token_from(client, "/send_message/bob")}
    assert client.post("/send_message/bob", data=real).status_code == 302
