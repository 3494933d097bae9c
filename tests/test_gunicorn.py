"""The app served by the real gunicorn, configured by gunicorn.conf.py."""

import requests


def test_gunicorn_serves_the_login_page_with_local_bootstrap(gunicorn_server):
    response = requests.get(gunicorn_server + "/auth/login", timeout=5)
    assert response.status_code == 200
    assert "Sign in" in response.text
    assert "cdn" not in response.text.lower()
    css = requests.get(gunicorn_server + "/bootstrap/static/css/bootstrap.min.css", timeout=5)
    assert css.status_code == 200 and len(css.content) > 100_000


def test_gunicorn_redirects_anonymous_visitors_to_login(gunicorn_server):
    response = requests.get(gunicorn_server + "/", allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")
