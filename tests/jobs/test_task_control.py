"""Cancel a task, try one again: from the card or a script, on real Redis, worker and SMTP."""

import logging
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from devkit.pytest_plugin import in_process_worker
from devkit.services import free_port
from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive
from microblog.extensions import db
from microblog.i18n import format_size, language
from microblog.jobs import events
from microblog.jobs.ending import end
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.live.channel import channel_for, missed_since
from tests.support.data import insert_posts, make_task, task_row
from tests.support.web import JSON

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long


def start_export(client) -> str:
    response = client.post("/exports", headers=JSON)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["task_id"]


def test_cancelling_a_queued_task_frees_its_slot_and_the_worker_drops_it(
    client, auth, app, mailbox, recorded_events
):
    # Given an export waiting in the queue (no worker yet)
    auth.signed_in("alice")
    first = start_export(client)
    # When it is cancelled
    response = client.post(f"/tasks/{first}/cancel", headers=JSON)
    # Then it is final at once, every tab hears so, and another export may start
    assert response.status_code == 200
    assert task_row(app, first).status == "cancelled" and task_row(app, first).finished_at
    finished = recorded_events.finished(first)
    assert finished.data["status"] == "cancelled"
    second = start_export(client)
    # And a worker drops the cancelled message and runs the new one
    with in_process_worker(app, threads=1):
        assert recorded_events.finished(second).data["status"] == "succeeded"
        app.extensions["dramatiq"].join("default", timeout=30_000)
    assert task_row(app, first).status == "cancelled" and task_row(app, first).attempts == 0
    assert len(mailbox) == 1


def test_cancelling_a_running_export_stops_it_with_nothing_stored_or_sent(
    client, auth, app, worker, mailbox, recorded_events, caplog
):
    # Given an export of 300,000 posts under way
    alice = auth.signed_in("alice")
    with app.app_context():
        insert_posts(alice, [f"post {i}" for i in range(300_000)])
    caplog.set_level(logging.INFO, logger="microblog.jobs.worker.runner")
    task_id = start_export(client)
    recorded_events.wait_for(
        lambda m: m.data["task_id"] == task_id and m.data["status"] == "running" and m.data["done"]
    )
    # When its user cancels it
    cancelled_at = time.time()
    response = client.post(f"/tasks/{task_id}/cancel", headers=JSON)
    assert response.status_code == 200, "the export ended before the cancel reached it"
    # Then the worker's attempt stops at its next write, and nothing is stored or sent
    app.extensions["dramatiq"].join("default", timeout=60_000)
    stops = [r for r in caplog.records if task_id in r.getMessage() and "stops" in r.getMessage()]
    assert stops, "the worker never noticed the cancel"
    assert stops[0].created - cancelled_at < 2, "the worker took over 2 s to stop"
    task = task_row(app, task_id)
    assert task.status == "cancelled" and task.error is None
    with app.app_context():
        assert db.session.get(Archive, task_id) is None
    assert mailbox == []
    events = [m for _, m in recorded_events.messages if m.data["task_id"] == task_id]
    assert events[-1].type == "task.finished" and events[-1].data["status"] == "cancelled"


def test_trying_a_failed_export_again_starts_a_new_one_that_succeeds(
    client, auth, app, worker, mailbox, recorded_events
):
    # Given an export that failed
    alice = auth.signed_in("alice")
    with app.app_context():
        failed = launch(export_posts, alice)
        end(failed.id, TaskStatus.FAILED, error="The email could not be sent.")
        failed_id = failed.id
    # When its user tries again from the card (a browser without JavaScript)
    response = client.post(f"/tasks/{failed_id}/retry", data={"next": "/explore"})
    # Then a new export runs to the end and the old task stays as it was
    assert response.status_code == 303 and response.headers["Location"] == "/explore"
    with app.app_context():
        newest = db.session.scalars(select(Task).where(Task.id != failed_id)).one()
    assert recorded_events.finished(newest.id).data["status"] == "succeeded"
    assert task_row(app, failed_id).status == "failed"
    assert len(mailbox) == 1


def test_only_an_active_task_can_be_cancelled_and_only_an_ended_one_retried(client, auth, app):
    auth.signed_in("alice")
    task_id = start_export(client)
    assert client.post(f"/tasks/{task_id}/retry", headers=JSON).status_code == 409
    assert client.post(f"/tasks/{task_id}/cancel", headers=JSON).status_code == 200
    assert client.post(f"/tasks/{task_id}/cancel", headers=JSON).status_code == 409
    # A second try while another export is active is refused: one active task per type
    start_export(client)
    refused = client.post(f"/tasks/{task_id}/retry", headers=JSON)
    assert refused.status_code == 409 and "already running" in refused.get_json()["message"]


def test_another_users_task_cannot_be_cancelled_or_retried(client, auth, app, make_user):
    bob = make_user("bob")
    with app.app_context():
        task_id = launch(export_posts, bob).id
    auth.signed_in("alice")
    for action in ("cancel", "retry"):
        assert client.post(f"/tasks/{task_id}/{action}").status_code == 404
    assert task_row(app, task_id).status == "queued"


@pytest.mark.parametrize("next_", ["https://evil.example/", "//evil.example/", "/\\evil", ""])
def test_the_way_back_is_a_path_of_this_site_only(client, auth, next_):
    auth.signed_in("alice")
    task_id = start_export(client)
    response = client.post(f"/tasks/{task_id}/cancel", data={"next": next_})
    assert response.status_code == 303 and response.headers["Location"] == "/"


def cards(html: str) -> list[tuple[str, str]]:
    """Return (task id, status) of each task card on a page, top to bottom."""
    found = re.findall(
        r'class="card mb-2 task[^"]*" data-task-id="(\w+)" data-status="(\w+)"', html
    )
    return [(task_id, status) for task_id, status in found if task_id]


def test_a_result_card_stays_until_its_archive_is_opened(
    client, auth, app, worker, recorded_events
):
    # Given two finished exports
    alice = auth.signed_in("alice")
    with app.app_context():
        insert_posts(alice, [f"post {i}" for i in range(1234)])
    older = start_export(client)
    recorded_events.finished(older)
    newer = start_export(client)
    recorded_events.finished(newer)
    # Then the home page shows both results, newest first, with when they finished and what
    # they made: a later export never hides an archive not yet downloaded
    html = client.get("/").get_data(as_text=True)
    assert cards(html) == [(newer, "succeeded"), (older, "succeeded")]
    assert "Finished <time" in html and "1,234 posts · " in html and " KB</span>" in html
    # When she downloads the older one (from the card or the email), its card goes from the
    # next page; the newer stays until she closes it
    assert client.get(f"/exports/{older}/download").status_code == 200
    assert cards(client.get("/").get_data(as_text=True)) == [(newer, "succeeded")]
    closed = client.post(f"/tasks/{newer}/dismiss", headers=JSON)
    assert closed.status_code == 200
    assert recorded_events.wait_for(lambda m: m.type == "task.dismissed").data["task_id"] == newer
    assert cards(client.get("/").get_data(as_text=True)) == []
    # And an active task's card cannot be closed
    with app.app_context():
        queued = launch(export_posts, alice).id
    assert client.post(f"/tasks/{queued}/dismiss", headers=JSON).status_code == 409


def test_cards_follow_one_rule_on_every_page(client, auth, app, make_user):
    # Given, oldest first: an export that succeeded, one that failed, one cancelled, and one
    # waiting in the queue
    alice = auth.signed_in("alice")
    make_user("bob")
    result = make_task(app, alice, "succeeded", created_ago=timedelta(minutes=4))
    failed = make_task(app, alice, "failed", created_ago=timedelta(minutes=3))
    cancelled = make_task(app, alice, "cancelled", created_ago=timedelta(minutes=2))
    active = make_task(app, alice, "queued")
    # Then where jobs start (her home, her profile) the cards are the active task's, the
    # newest end of the type (the cancel, which replaced the failure) and the unopened result
    shown = [(active, "queued"), (cancelled, "cancelled"), (result, "succeeded")]
    for path in ("/", "/user/alice"):
        assert cards(client.get(path).text) == shown, path
    # And every other page shows only what is under way: no finished card sits above them
    for path in ("/explore", "/messages", "/auth/account", "/user/bob", "/no-such-page"):
        assert cards(client.get(path).text) == [(active, "queued")], path
    # When she closes the cancelled card, the failure it replaced does not come back
    assert client.post(f"/tasks/{cancelled}/dismiss", headers=JSON).status_code == 200
    assert cards(client.get("/").text) == [(active, "queued"), (result, "succeeded")]
    assert failed not in client.get("/").text


def test_a_card_says_how_far_in_its_readers_words(app_context, make_user):
    # Given a running export, and a job type without words of its own
    task = Task(user_id=make_user("alice"), name="export_posts", status=TaskStatus.RUNNING,
                description="Exporting your posts", done=51_000, total=300_404)  # fmt: skip
    unknown = Task(user_id=task.user_id, name="gone", status=TaskStatus.RUNNING,
                   description="Gone", done=5, total=12)  # fmt: skip
    # Then the event counts in English, and each reader gets their own language's
    event = events.task_event(task)
    assert event["counts"] == "51,000 of 300,404 posts"
    with language("es"):
        assert events.localized(event)["counts"] == "51.000 de 300.404 publicaciones"
    assert events.task_event(Task(**{**vars_of(task), "done": 0, "total": 1}))["counts"] == (
        "0 of 1 post"
    )
    assert events.task_event(unknown)["counts"] == "5 of 12"
    # And before the job knows its total, there is nothing to count
    assert events.task_event(Task(**{**vars_of(task), "total": None}))["counts"] is None


def vars_of(task: Task) -> dict:
    return {key: getattr(task, key) for key in ("user_id", "name", "status", "description",
                                                "done", "total")}  # fmt: skip


def test_export_sizes_read_the_way_people_read_them():
    assert [format_size(n) for n in (0, 999, 1000, 12_345, 999_999, 1_234_567, 45_000_000)] == [
        "0 bytes", "999 bytes", "1.0 KB", "12 KB", "1,000 KB", "1.2 MB", "45 MB"
    ]  # fmt: skip


def test_a_task_waiting_out_an_outage_says_so_and_can_be_cancelled(
    app, client, auth, worker, recorded_events
):
    # Given an export whose mail relay is down: it waits for its next try
    app.config["MAIL_PORT"] = free_port()
    auth.signed_in("alice")
    task_id = start_export(client)
    waiting = recorded_events.wait_for(
        lambda m: m.data["task_id"] == task_id and m.data.get("retry_at") is not None, timeout=30
    )
    assert waiting.data["status"] == "running"
    assert waiting.data["error"] == "The mail server is unreachable."
    # Then a reload shows what it waits for, and when it tries again
    page = client.get("/").text
    assert "The mail server is unreachable. Trying again at" in page
    assert "(attempt 2 of 13)" in page
    # When the user cancels it meanwhile
    response = client.post(f"/tasks/{task_id}/cancel", headers=JSON)
    # Then it is cancelled at once, and its next try is dropped when it comes
    assert response.status_code == 200
    assert recorded_events.finished(task_id).data["status"] == "cancelled"
    assert task_row(app, task_id).status == "cancelled"


def test_a_task_ends_once_and_its_end_is_announced_once(app_context, make_user):
    # Given a queued task (no worker runs here)
    alice = make_user("alice")
    task_id = launch(export_posts, alice).id

    # When two enders race, one after the other: a cancel, then a late failure
    cancelled = end(task_id, TaskStatus.CANCELLED)
    late = end(task_id, TaskStatus.FAILED, error="too late")

    # Then the first wins, the second changes nothing, and one final event went out
    assert cancelled is not None and late is None
    assert db.session.get(Task, task_id).status == TaskStatus.CANCELLED
    log = missed_since(channel_for(alice), "0")
    assert [m.type for m in log if m.data["task_id"] == task_id] == [
        "task.progress",
        "task.finished",
    ]
    with pytest.raises(ValueError):
        end(task_id, TaskStatus.RUNNING)  # not a final status
