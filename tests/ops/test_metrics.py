"""Prometheus metrics: the web's /metrics (behind a token) and a real worker host's server."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devkit.services import free_port, wait_until
from microblog import create_app
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from tests.support.data import SSEReader, insert_posts
from tests.support.servers import LIVE_METRICS_TOKEN, running_worker
from tests.support.web import JSON, live_session

TOKEN = "scraper-secret"


def samples(text: str) -> dict[tuple, float]:
    """Return every sample of a Prometheus text page as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page: dict, name: str, **labels) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": TOKEN}


@pytest.fixture
def scrape(app, client):
    def scrape_() -> dict:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return samples(response.text)

    return scrape_


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST"])
def test_metrics_do_not_exist_without_a_token(app_config, method):
    app = create_app({**app_config, "METRICS_TOKEN": ""})
    try:
        assert app.test_client().open("/metrics", method=method).status_code == 404
    finally:
        with app.app_context():
            db.engine.dispose()


def test_metrics_need_the_bearer_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "microblog_" not in response.text


def test_metrics_change_when_a_task_runs(app, scrape, make_user, worker, recorded_events):
    user_id = make_user("alice")
    with app.app_context():
        insert_posts(user_id, [f"post {i}" for i in range(50)])
    before = scrape()
    with app.app_context():
        task_id = launch(export_posts, user_id).id
    during = scrape()  # queued (or already running): one active export
    assert sum(
        value(during, "microblog_tasks_active", job="export_posts", status=status)
        for status in ("queued", "running")
    ) in (0, 1)
    assert recorded_events.finished(task_id).data["status"] == "succeeded"
    # The worker counts an event right after Redis has it: the scrape may come first.
    finished = {"type": "task.finished"}
    wait_until(
        lambda: (
            value(scrape(), "microblog_events_published_total", **finished)
            > value(before, "microblog_events_published_total", **finished)
        ),
        10,
        "the finished event to be counted",
    )
    after = scrape()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("microblog_task_attempts_total", job="export_posts") == 1
    assert grew("microblog_tasks_ended_total", job="export_posts", status="succeeded") == 1
    assert grew("microblog_task_duration_seconds_count", job="export_posts",
                status="succeeded") == 1  # fmt: skip
    assert grew("microblog_events_published_total", type="task.finished") == 1
    assert grew("microblog_events_published_total", type="task.progress") >= 2
    assert value(after, "microblog_tasks_active", job="export_posts", status="running") == 0
    assert value(after, "microblog_queue_messages", queue="default", state="ready") == 0
    assert value(after, "microblog_workers_live") == 1


def test_a_cancelled_task_is_counted_where_it_is_cancelled(app, client, auth, scrape):
    auth.signed_in("alice")
    before = scrape()
    task_id = client.post("/exports", headers=JSON).get_json()["task_id"]
    assert value(scrape(), "microblog_queue_messages", queue="default", state="ready") == 1
    assert client.post(f"/tasks/{task_id}/cancel").status_code in (200, 303)
    after = scrape()
    ended = ("microblog_tasks_ended_total", (("job", "export_posts"), ("status", "cancelled")))
    assert after.get(ended, 0) - before.get(ended, 0) == 1


def test_gunicorn_processes_add_up_their_streams(gunicorn_server, live_user):
    _, name = live_user("metrics")
    session = live_session(gunicorn_server, name)
    headers = {"Authorization": f"Bearer {LIVE_METRICS_TOKEN}"}

    def open_streams() -> float:
        page = requests.get(gunicorn_server + "/metrics", headers=headers, timeout=10)
        assert page.status_code == 200, page.text
        return value(samples(page.text), "microblog_sse_streams_open")

    baseline = open_streams()
    response = session.get(gunicorn_server + "/stream", stream=True, timeout=30)
    reader = SSEReader(response)
    try:
        reader.wait_for(lambda r: r.retry is not None, 30, "the retry hint")
        assert open_streams() == baseline + 1
    finally:
        reader.close()
    wait_until(lambda: open_streams() == baseline, 30, "the closed stream to be uncounted")


def test_a_worker_host_serves_its_metrics(live_app, live_env, live_user, tmp_path):
    port = free_port()
    env = {**live_env, "dramatiq_prom_port": str(port), "dramatiq_prom_db": str(tmp_path)}
    user_id, _ = live_user("worker-metrics", posts=20)

    def scrape() -> dict:
        try:
            page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except requests.ConnectionError:
            return {}
        return samples(page.text) if page.ok else {}

    with running_worker(env, tmp_path / "worker.log"):
        wait_until(lambda: scrape() != {}, 30, "the worker's metrics server")
        with live_app.app_context():
            launch(export_posts, user_id)
        labels = {"job": "export_posts", "status": "succeeded"}
        # (the session's Redis may hold other tests' messages, which this worker runs too)
        wait_until(
            lambda: value(scrape(), "microblog_tasks_ended_total", **labels) >= 1,
            60,
            "the worker to count the finished export",
        )
        page = scrape()
    # Dramatiq's own message metrics, from the same server
    assert value(page, "dramatiq_messages_total", queue_name="default",
                 actor_name="export_posts") >= 1  # fmt: skip
    assert value(page, "microblog_task_attempts_total", job="export_posts") >= 1
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in log  # not every interface
