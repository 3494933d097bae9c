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


LEVELS = {"success", "info", "warning", "danger"}


def test_every_json_error_a_page_can_receive_says_how_to_style_it(make_app, auth, client, app):
    # Given the requests a page's scripts make, refused every way they can be
    auth.signed_in()
    guarded = make_app(WTF_CSRF_ENABLED=True).test_client()
    answers = {
        "no such task (404)": client.post("/tasks/nope/cancel", headers=JSON),
        "wrong method (405)": client.get("/tasks/nope/cancel", headers=JSON),
        "signed out (401)": app.test_client().post("/exports", headers=JSON),
        "no security token (400)": guarded.post("/exports", headers=JSON),
    }
    # Then each is JSON whose message comes with one of the levels the page styles
    for what, response in answers.items():
        assert response.status_code >= 400, what
        body = response.get_json()
        assert body is not None, what
        assert body["message"] and body["level"] in LEVELS, (what, body)
