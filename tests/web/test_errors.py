"""Error pages keep the site's look and never leak a traceback."""

import pytest
from flask import Flask

from tests.support.web import JSON


@pytest.fixture
def app(app):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app


def test_unknown_page_is_404_in_site_look(client):
    response = client.get("/no/such/page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "404 · Not Found" in html
    assert 'class="navbar' in html


def test_crash_is_500_page_without_traceback(client, app: Flask):
    app.testing = False  # let the handler run instead of re-raising into the test
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "500 · Internal Server Error" in html
    assert "secret internals" not in html


def test_wrong_method_is_405(client):
    assert client.delete("/auth/login").status_code == 405


def test_json_clients_get_json_errors(client):
    response = client.get("/no/such/page", headers=JSON)
    assert response.status_code == 404
    assert response.get_json()["error"] == "Not Found"
