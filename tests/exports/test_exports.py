"""Export my posts, end to end: real Redis, real worker, real SMTP."""

import gzip
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from devkit.services import free_port
from microblog.exports.archive import post_json
from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive
from microblog.exports.views import attachment
from microblog.extensions import db, mail
from microblog.jobs.launch import TaskAlreadyActive, launch
from microblog.jobs.models import Task, TaskStatus
from microblog.posts.models import Post, post_rows
from tests.support.data import insert_posts
from tests.support.web import JSON

TRICKY = [
    "héllo wörld ✨ — naïve café",
    '<script>alert("x")</script> & <b>bold</b>',
    'quotes " and \\ backslashes \n newlines',
    "日本語のポスト 🚀",
]


def only_task(app) -> Task:
    with app.app_context():
        tasks = list(db.session.scalars(select(Task)))
        assert len(tasks) == 1, tasks
        db.session.expunge_all()
        return tasks[0]


def run_export(client, app, recorded_events) -> Task:
    """Start an export as the signed-in user and wait for its final event."""
    client.post("/exports")
    task = only_task(app)
    recorded_events.finished(task.id)
    return task


def expected_posts(bodies: list[str]) -> list[dict]:
    return [
        {"body": body, "timestamp": f"2024-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}
        for i, body in enumerate(bodies)
    ]


def test_export_is_emailed_and_downloadable_with_every_post(
    client, auth, app, worker, mailbox, recorded_events
):
    # Given a user with 10,000+ posts, some with unicode and HTML-looking text
    alice_id = auth.signed_in("alice")
    bodies = TRICKY + [f"post number {i}" for i in range(10_000)]
    with app.app_context():
        insert_posts(alice_id, bodies)

    # When she asks for an export
    response = client.post("/exports")
    assert response.status_code == 303
    task = only_task(app)
    finished = recorded_events.finished(task.id)

    # Then the task succeeded and the final event links the archive
    task = only_task(app)
    assert (task.status, task.progress, task.done, task.total) == ("succeeded", 100, 10_004, 10_004)
    assert finished.data["url"] == f"/exports/{task.id}/download"

    # And one email arrived with the link and the posts attached
    assert len(mailbox) == 1
    email = mailbox[0]
    assert email["To"] == "alice@example.com"
    parts = {part.get_content_type(): part for part in email.walk()}
    text = parts["text/plain"].get_payload(decode=True).decode()
    assert f"/exports/{task.id}/download" in text
    # which says what the download is and what the attachment is
    assert re.search(
        r"The download, microblog-alice-\d{8}-\d{6}\.json\.gz, holds your posts "
        r"as JSON, compressed with gzip \([\d.]+ KB\)\.",
        text,
    ), text
    assert "attached to this email, uncompressed, as posts.json." in text
    attached = json.loads(parts["application/json"].get_payload(decode=True))
    assert attached["user"]["username"] == "alice"
    assert attached["posts"] == expected_posts(bodies)

    # And the download returns the same archive
    download = client.get(f"/exports/{task.id}/download")
    assert download.status_code == 200
    assert download.mimetype == "application/gzip"
    assert 'attachment; filename="microblog-alice-' in download.headers["Content-Disposition"]
    assert json.loads(gzip.decompress(download.data)) == attached


def test_archive_over_the_attachment_limit_is_only_linked(
    client, auth, app, worker, mailbox, recorded_events
):
    alice_id = auth.signed_in("alice")
    app.config["EXPORT_ATTACHMENT_LIMIT"] = 100
    with app.app_context():
        insert_posts(alice_id, ["a post that makes the JSON larger than 100 bytes"] * 5)
    client.post("/exports")
    task_id = only_task(app).id
    recorded_events.finished(task_id)
    types = [part.get_content_type() for part in mailbox[0].walk()]
    assert "application/json" not in types
    text = next(p for p in mailbox[0].walk() if p.get_content_type() == "text/plain")
    text = text.get_payload(decode=True).decode()
    assert f"/exports/{task_id}/download" in text
    # and says why nothing is attached
    assert re.search(
        r"They are not attached to this email: uncompressed they take \d+ bytes, "
        r"more than the 100 bytes an email may carry here\.",
        " ".join(text.split()),
    )


def test_export_of_a_user_without_posts_succeeds_with_an_empty_list(
    client, auth, app, worker, mailbox, recorded_events
):
    auth.signed_in("alice")
    task = run_export(client, app, recorded_events)
    archive = json.loads(gzip.decompress(client.get(f"/exports/{task.id}/download").data))
    assert archive["posts"] == []
    assert only_task(app).progress == 100


def test_export_is_refused_while_one_is_running(client, auth, app):
    # No worker runs, so the first export stays queued.
    auth.signed_in("alice")
    assert client.post("/exports").status_code == 303
    response = client.post("/exports", follow_redirects=True)
    assert "already in progress" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Task.id))) == 1


def test_scripts_get_202_then_409_with_json(client, auth):
    # Given a script (it asks for JSON) and no worker, so the first export stays queued
    auth.signed_in("alice")
    # When it starts an export twice
    first = client.post("/exports", headers=JSON)
    second = client.post("/exports", headers=JSON)
    # Then the first is accepted with its task id, and the second refused while it is active
    assert first.status_code == 202
    assert re.fullmatch(r"[0-9a-f]{32}", first.get_json()["task_id"])
    assert second.status_code == 409
    assert second.get_json() == {
        "message": "An export of your posts is already in progress.",
        "level": "warning",
        "task_id": None,
    }


def test_concurrent_launches_create_exactly_one_task(app, make_user):
    alice_id = make_user("alice")
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def start() -> None:
        with app.app_context():
            barrier.wait()
            try:
                launch(export_posts, alice_id)
                outcomes.append("started")
            except TaskAlreadyActive:
                outcomes.append("refused")

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Task.id))) == 1


def export_button(client) -> str:
    html = client.get("/user/alice").get_data(as_text=True)
    return re.search(r'<button[^>]*id="export-button"[^>]*>', html).group(0)


def test_export_button_is_disabled_while_an_export_is_active(client, auth):
    auth.signed_in("alice")
    assert "disabled" not in export_button(client)
    client.post("/exports")
    assert "disabled" in export_button(client)
    assert "Exporting your posts" in client.get("/").get_data(as_text=True)


def test_another_user_cannot_see_or_download_an_export(
    client, auth, app, make_user, worker, recorded_events
):
    auth.signed_in("alice")
    task = run_export(client, app, recorded_events)
    auth.logout()
    auth.signed_in("mallory")
    assert client.get(f"/exports/{task.id}/download").status_code == 404
    assert client.get(f"/tasks/{task.id}").status_code == 404
    assert task.id not in client.get("/").get_data(as_text=True)


def test_download_of_an_unknown_task_is_404(client, auth):
    auth.signed_in("alice")
    assert client.get("/exports/does-not-exist/download").status_code == 404


def test_export_start_is_post_only(client, auth):
    auth.signed_in("alice")
    assert client.get("/exports").status_code == 405


def test_smtp_down_is_retried_then_fails_with_a_reason(
    client, auth, app, worker, mailbox, recorded_events, monkeypatch
):
    # Given a mail server that refuses connections and short backoffs
    app.config["MAIL_PORT"] = free_port()
    mail.init_app(app)  # Flask-Mail copies its settings at init
    monkeypatch.setitem(export_posts.options, "min_backoff", 10)
    monkeypatch.setitem(export_posts.options, "max_backoff", 50)
    auth.signed_in("alice")

    client.post("/exports")
    task = only_task(app)
    finished = recorded_events.finished(task.id)

    task = only_task(app)
    assert task.status == TaskStatus.FAILED
    assert task.attempts == export_posts.options["max_retries"] + 1
    assert "email could not be sent" in task.error
    assert finished.data["error"] == task.error and finished.data["progress"] != 100
    assert mailbox == []
    with app.app_context():  # the archive itself was built once and kept
        assert db.session.scalar(select(func.count()).select_from(Archive)) == 1


def test_task_state_is_readable_as_json_by_its_owner(client, auth, app):
    auth.signed_in("alice")
    client.post("/exports")
    task = only_task(app)
    data = client.get(f"/tasks/{task.id}").get_json()
    assert data["status"] == "queued" and data["name"] == "export_posts" and data["url"] is None


def test_a_download_name_cannot_break_out_of_its_header():
    # An account made before usernames were checked may hold any character.
    header = attachment('microblog-al\nice"; x=ü.json.gz')
    assert "\n" not in header and header.count('"') == 2
    assert header.startswith('attachment; filename="microblog-al_ice___x__.json.gz"')
    assert header.endswith("filename*=UTF-8''microblog-al%0Aice%22%3B%20x%3D%C3%BC.json.gz")


SECOND, MICRO = timedelta(seconds=1), timedelta(microseconds=1)


def test_chunks_hold_every_post_once_oldest_first_across_equal_timestamps(app, make_user):
    # Given posts sharing timestamps across where 3-row chunks split them
    alice = make_user("alice")
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    with app.app_context():
        for i in range(11):
            db.session.add(Post(body=f"p{i}", user_id=alice, timestamp=moment + (i // 4) * SECOND))
        db.session.commit()
        # When they are read in chunks
        chunks = list(post_rows(alice, chunk=3))
    # Then each post comes once, in (timestamp, id) order
    assert [len(rows) for rows in chunks] == [3, 3, 3, 2]
    assert [row.body for rows in chunks for row in rows] == [f"p{i}" for i in range(11)]


@given(body=st.text(), micros=st.integers(0, 2**40))
def test_a_posts_json_is_exactly_what_json_dumps_writes(body, micros):
    row = SimpleNamespace(body=body, timestamp=datetime(2020, 1, 1, tzinfo=UTC) + micros * MICRO)
    timestamp = row.timestamp.isoformat().replace("+00:00", "Z")
    expected = json.dumps({"body": body, "timestamp": timestamp}, ensure_ascii=False)
    assert post_json(row) == expected
