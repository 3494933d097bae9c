"""With Redis down, starting an export says so clearly and leaves no stuck task."""

import pytest
from sqlalchemy import select

from devkit.services import free_port
from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.models import Task, TaskStatus
from tests.support.web import JSON


@pytest.fixture
def app_config(app_config, monkeypatch):
    # The failed task's end is announced to a Redis that never comes: give up at once
    monkeypatch.setattr(events, "FINAL_EVENT_RETRY_SECONDS", 0)
    return {**app_config, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


def test_redis_down_at_launch_gives_a_clear_message_and_no_stuck_task(client, auth, app):
    auth.signed_in("alice")
    response = client.post("/exports", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "the job queue is unreachable" in html
    with app.app_context():
        task = db.session.scalars(select(Task)).one()
        assert task.status == TaskStatus.FAILED
        assert "job queue is unreachable" in task.error


def test_scripts_are_told_503_when_the_queue_is_unreachable(client, auth):
    auth.signed_in("alice")
    response = client.post("/exports", headers=JSON)
    assert response.status_code == 503
    assert "the job queue is unreachable" in response.get_json()["message"]


def test_pages_render_while_redis_is_down(client, auth):
    auth.signed_in("alice")
    assert client.get("/").status_code == 200
    assert client.get("/user/alice").status_code == 200
