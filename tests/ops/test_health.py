"""The health endpoint operators and load balancers poll."""

from devkit.pytest_plugin import in_process_worker
from devkit.services import free_port, wait_until


def test_health_is_ok_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "streams": 0,
        "subscription": "idle",  # no stream has opened in this process yet
    }


def test_health_is_503_when_redis_is_unreachable(client, app):
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["redis"].startswith("error")
    assert response.get_json()["database"] == "ok"


def test_readiness_needs_the_mail_relay_and_a_live_worker(client, app):
    # No worker yet: the web process is alive, the service is not ready
    waiting = client.get("/readyz")
    assert waiting.status_code == 503
    assert waiting.get_json() == {"status": "degraded", "database": "ok", "redis": "ok",
                                  "mail": "ok", "workers": 0}  # fmt: skip
    assert client.get("/healthz").status_code == 200  # liveness is unaffected
    with in_process_worker(app, threads=1):
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "readiness")
        ready = client.get("/readyz").get_json()
        assert ready == {"status": "ok", "database": "ok", "redis": "ok", "mail": "ok",
                         "workers": 1}  # fmt: skip
        # A relay that refuses connections makes the service unready, and says so: to anyone
        # only that the mail check fails, to operators why, and where
        app.config["MAIL_PORT"] = free_port()
        refused = client.get("/readyz")
        assert refused.status_code == 503
        assert refused.get_json()["mail"] == "error"
        app.config["METRICS_TOKEN"] = "scraper"
        told = client.get("/readyz", headers={"Authorization": "Bearer scraper"}).get_json()
        relay = f"127.0.0.1:{app.config['MAIL_PORT']}"
        assert told["mail"] == f"error: {relay}: Connection refused"
        wrong = client.get("/readyz", headers={"Authorization": "Bearer guess"}).get_json()
        assert wrong["mail"] == "error"


def test_a_signed_in_admin_reads_readiness_details(app, client, auth, runner):
    app.config["MAIL_PORT"] = free_port()
    auth.signed_in("alice")
    assert client.get("/readyz").get_json()["mail"] == "error"  # not an admin
    assert runner.invoke(args=["users", "grant-admin", "alice"]).exit_code == 0
    assert client.get("/readyz").get_json()["mail"].startswith("error: 127.0.0.1:")
