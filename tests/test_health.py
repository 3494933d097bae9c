"""The health endpoint operators and load balancers poll."""

from microblog.services import free_port


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
