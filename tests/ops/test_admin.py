"""The operators' page and the admin role, on the real database, Redis and a real worker."""

import json
import re
from datetime import timedelta

import pytest
import redis
import requests
from sqlalchemy import select

from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs.models import Task
from microblog.live import channel
from tests.support.data import SSEReader, make_task
from tests.support.web import JSON, live_session

ADMIN_URLS = [
    ("get", "/admin/tasks"),
    ("get", "/admin/stream"),
    ("post", f"/admin/tasks/{'0' * 32}/cancel"),
    ("post", f"/admin/tasks/{'0' * 32}/retry"),
]


def make_admin(app, runner, make_user, username: str = "root") -> int:
    user_id = make_user(username)
    result = runner.invoke(args=["users", "grant-admin", username])
    assert result.exit_code == 0, result.output
    return user_id


def listed(client, query: str = "") -> list[str]:
    response = client.get("/admin/tasks" + query)
    assert response.status_code == 200, response.text
    return re.findall(r'<tr data-task-id="([0-9a-f]{32})"', response.text)


@pytest.mark.parametrize(("method", "url"), ADMIN_URLS)
def test_admin_pages_do_not_exist_for_anyone_but_admins(client, auth, method, url):
    assert getattr(client, method)(url).status_code == 404  # signed out: no login redirect
    auth.signed_in("alice")
    assert getattr(client, method)(url).status_code == 404
    assert "/admin/tasks" not in client.get("/").text  # and no link to them


def test_grant_and_revoke_admin(app, client, auth, runner):
    auth.signed_in("alice")
    result = runner.invoke(args=["users", "grant-admin", "alice"])
    assert result.exit_code == 0 and "alice is an admin" in result.output
    assert client.get("/admin/tasks").status_code == 200
    assert 'href="/admin/tasks"' in client.get("/").text
    result = runner.invoke(args=["users", "revoke-admin", "alice"])
    assert result.exit_code == 0
    assert client.get("/admin/tasks").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(User.is_admin).where(User.username == "alice")) is False
    result = runner.invoke(args=["users", "grant-admin", "nobody"])
    assert result.exit_code == 1 and "there is no user 'nobody'" in result.output


def test_admins_see_everyones_tasks_filtered(app, client, auth, runner, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    failed = make_task(app, alice, "failed")
    old = make_task(app, bob, "succeeded", created_ago=timedelta(days=3))
    queued = make_task(app, bob, "queued")
    make_admin(app, runner, make_user)
    auth.login("root")

    assert listed(client) == [queued, failed, old]  # newest first
    assert listed(client, "?status=failed") == [failed]
    assert listed(client, "?user=bob") == [queued, old]
    assert listed(client, "?older_than=2d") == [old]
    assert listed(client, "?type=export_posts&status=queued") == [queued]
    page = client.get("/admin/tasks?status=failed").text
    assert "alice" in page and "The email could not be sent." in page
    assert re.search(r'admin-retry"[^>]*action="/admin/tasks/' + failed, page)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "?older_than=3+weeks",
            "Older than: write a duration like 90s, 30m, 12h or 7d (at most 100 years).",
        ),
        ("?status=lost", "Status: not a task status."),
        ("?user=nobody", "User: there is no user &#39;nobody&#39;."),
    ],
)
def test_bad_filters_get_a_message(client, auth, app, runner, make_user, query, message):
    make_admin(app, runner, make_user)
    auth.login("root")
    response = client.get("/admin/tasks" + query)
    assert response.status_code == 400
    assert message in response.text


def test_the_list_pages_by_cursor_without_gaps_or_repeats(app, client, auth, runner, make_user):
    users = [make_user(f"user{i}") for i in range(60)]
    made = [make_task(app, user_id, "succeeded") for user_id in users]
    make_admin(app, runner, make_user)
    auth.login("root")
    page = client.get("/admin/tasks").text
    first = re.findall(r'<tr data-task-id="([0-9a-f]{32})"', page)
    older = re.search(r'rel="next" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    second = listed(client, older.removeprefix("/admin/tasks"))
    assert len(first) == 50 and len(second) == 10
    assert first + second == list(reversed(made))
    assert client.get("/admin/tasks?before=12.nothex").status_code == 404


def test_admins_cancel_and_retry_any_users_task(app, client, auth, runner, make_user,
                                                recorded_events):  # fmt: skip
    bob = make_user("bob")
    task_id = make_task(app, bob, "queued")
    make_admin(app, runner, make_user)
    auth.login("root")

    response = client.post(f"/admin/tasks/{task_id}/cancel", data={"next": "/admin/tasks"})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/tasks"
    finished = recorded_events.finished(task_id)  # bob's tabs hear it, and why
    assert finished.data["status"] == "cancelled"
    assert finished.data["error"] == "An operator cancelled this job."
    response = client.post(f"/admin/tasks/{task_id}/cancel", headers=JSON)
    assert response.status_code == 409

    response = client.post(f"/admin/tasks/{task_id}/retry", headers=JSON)
    assert response.status_code == 202
    new_id = response.get_json()["task_id"]
    with app.app_context():
        new = db.session.get(Task, new_id)
        assert new.user_id == bob and new.status == "queued" and new_id != task_id
    assert client.post(f"/admin/tasks/{'f' * 32}/retry").status_code == 404


def test_the_summary_shows_queues_and_live_workers(app, client, auth, runner, make_user, worker):
    make_task(app, make_user("bob"), "succeeded")
    make_admin(app, runner, make_user)
    auth.login("root")
    page = client.get("/admin/tasks").text
    assert re.search(r"<td>default</td>", page)
    assert "1 live worker<" in page


def test_the_operators_stream_carries_every_users_events_and_only_to_admins(
    gunicorn_server, live_app, live_user
):
    _, admin = live_user("admin")
    _, bob = live_user("bob")
    with live_app.app_context():
        db.session.execute(db.update(User).where(User.username == admin).values(is_admin=True))
        db.session.commit()
        bob_id = db.session.scalar(select(User.id).where(User.username == bob))
    operator = live_session(gunicorn_server, admin)
    page = operator.get(gunicorn_server + "/admin/tasks", timeout=10).text
    found = re.search(r'id="admin-tasks" data-stream-url="([^"]+)"', page)
    stream_url = found.group(1).replace("&amp;", "&")
    assert stream_url.startswith("/admin/stream?last_event_id=")
    response = operator.get(gunicorn_server + stream_url, stream=True, timeout=30)
    assert response.status_code == 200
    reader = SSEReader(response)
    try:
        reader.wait_for(lambda r: r.retry is not None, 30, "the retry hint")
        # When bob starts an export, the operators' stream hears of it, with bob's id
        bob_session = live_session(gunicorn_server, bob)
        token = re.search(
            r'name="csrf_token"[^>]*value="([^"]+)"', bob_session.get(gunicorn_server).text
        ).group(1)
        started = bob_session.post(
            gunicorn_server + "/exports", headers={**JSON, "X-CSRFToken": token}, timeout=10
        )
        assert started.status_code == 202, started.text
        task_id = started.json()["task_id"]
        reader.wait_for(
            lambda r: any(e["data"].get("task_id") == task_id for e in r.events), 10, "bob's event"
        )
        event = next(e for e in reader.events if e["data"]["task_id"] == task_id)
        assert event["event"] == "task.progress" and event["data"]["user_id"] == bob_id
    finally:
        reader.close()
    # And bob himself cannot open it
    assert bob_session.get(gunicorn_server + "/admin/stream", timeout=10).status_code == 404
    assert requests.get(gunicorn_server + "/admin/stream", timeout=10).status_code == 404


def test_events_are_copied_for_operators_only_while_their_page_is_open(app_context, redis_server):
    store = redis.Redis.from_url(redis_server.url)
    operators_log = channel.log_key(channel.OPERATORS)
    # With no operators' page open, a user's event is not copied
    channel.publish(7, "task.progress", {"n": 1})
    assert store.xlen(operators_log) == 0 and store.xlen(channel.log_key("user.7")) == 1
    # Once a page says it is open, every event is, with its user's id, for about a minute
    channel.mark_operators_watching()
    channel.publish(7, "task.progress", {"n": 2})
    copies = store.xrange(operators_log)
    assert [json.loads(fields[b"data"]) for _, fields in copies] == [{"n": 2, "user_id": 7}]
    assert 0 < store.ttl(channel.OPERATORS_WATCHING) <= channel.WATCHING_SECONDS
