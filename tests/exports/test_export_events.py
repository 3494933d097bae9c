"""The events an export publishes, recorded from a real run and replayed through /stream."""

import pytest

from microblog.jobs.events import FINISHED, PROGRESS, TaskEvent
from microblog.jobs.recording import Recording, replay
from tests.support.data import SSEReader, insert_posts
from tests.support.web import JSON, live_session


@pytest.fixture
def recorded_export(client, auth, app, worker, recorded_events):
    """Run a real export of 20,000 posts and return the events it published, in order."""
    alice_id = auth.signed_in("alice")
    with app.app_context():
        insert_posts(alice_id, [f"post {i}" for i in range(20_000)])
    task_id = client.post("/exports", headers=JSON).get_json()["task_id"]
    recorded_events.finished(task_id)
    return [m for m in recorded_events.of(f"user.{alice_id}") if m.data["task_id"] == task_id]


def test_export_events_are_ordered_monotonic_and_finish_once(recorded_export):
    ids = [tuple(map(int, m.id.split("-"))) for m in recorded_export]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    progress = [m.data["progress"] for m in recorded_export]
    assert progress == sorted(progress)
    assert [m.type for m in recorded_export].count(FINISHED) == 1
    assert recorded_export[-1].type == FINISHED
    assert {m.type for m in recorded_export[:-1]} == {PROGRESS}
    statuses = [m.data["status"] for m in recorded_export]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    final = recorded_export[-1].data
    assert (final["done"], final["total"], final["progress"]) == (20_000, 20_000, 100)
    assert final["url"].endswith("/download")
    expected = set(TaskEvent.__annotations__)  # the one contract: every field, always
    assert all(set(m.data) == expected for m in recorded_export)
    assert final["summary"].startswith("20,000 posts · ") and final["finished_at"]


def test_recorded_export_replays_through_the_stream_as_a_browser_sees_it(
    recorded_export, gunicorn_server, live_app, live_user
):
    # Given a browser streaming events for a user
    user_id, name = live_user("viewer")
    response = live_session(gunicorn_server, name).get(
        gunicorn_server + "/stream", stream=True, timeout=30
    )
    reader = SSEReader(response)
    try:
        reader.wait_for(lambda r: r.retry is not None, 30, "the stream to open")

        # When the recorded export is replayed on that user's channel
        recording = Recording("export_posts", [
            {"type": m.type, "data": m.data, "after_ms": 0} for m in recorded_export
        ])  # fmt: skip
        with live_app.app_context():
            ids = replay(recording, user_id)

        # And the browser reads them all
        received = reader.wait_for_events(len(recorded_export))
    finally:
        reader.close()
    # Then the browser receives the same sequence, as a task of its own, with the new ids
    assert [e["event"] for e in received] == [m.type for m in recorded_export]
    new_id = received[0]["data"]["task_id"]
    assert new_id != recorded_export[0].data["task_id"]
    old_id = recorded_export[0].data["task_id"]
    expected = [m.data | {"task_id": new_id} for m in recorded_export]
    expected[-1]["url"] = expected[-1]["url"].replace(old_id, new_id)
    assert [e["data"] for e in received] == expected
    assert [e["id"] for e in received] == ids
