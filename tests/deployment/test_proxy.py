"""The compose file's nginx configuration, run for real in front of gunicorn.

The same server blocks as in production, with only the upstream address and the listening
port changed, so what the browser gets through the proxy is tested rather than assumed.
"""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from devkit.services import free_port, wait_until
from microblog.jobs import events
from microblog.live import channel as live
from tests.support import ROOT
from tests.support.data import SSEReader
from tests.support.web import live_session


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        pytest.fail("nginx is not installed: apt-get install nginx (the test command does)")
    return found


def site_config(upstream: str, port: int) -> str:
    """Return the compose file's nginx server blocks, pointed at ``upstream`` on ``port``."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = compose["configs"]["nginx"]["content"].replace("$$", "$")
    assert "listen 80;" in config and "http://web:8000" in config
    return config.replace("listen 80;", f"listen 127.0.0.1:{port};").replace(
        "http://web:8000", upstream
    )


@pytest.fixture
def proxy(gunicorn_server, tmp_path) -> Iterator[str]:
    """nginx with the production configuration in front of the session's gunicorn."""
    port = free_port()
    (tmp_path / "site.conf").write_text(site_config(gunicorn_server, port))
    temp = "\n".join(f"  {kind}_temp_path {tmp_path / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} warn;\nevents {{}}\n"
        f"http {{\n  access_log off;\n{temp}\n  include {tmp_path / 'site.conf'};\n}}\n"
    )
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")
        try:
            return requests.get(url + "/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, 30, "nginx to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
        log = Path(tmp_path / "error.log")
        assert "[emerg]" not in (log.read_text() if log.exists() else "")


def test_pages_and_sign_in_work_through_the_proxy(proxy, live_user):
    _, name = live_user("proxied")
    session = live_session(proxy, name)
    response = session.get(proxy + "/", timeout=5)
    assert response.status_code == 200 and name in response.text


def test_events_reach_the_browser_through_the_proxy_as_they_happen(proxy, live_user, live_app):
    # Given a signed-in user's stream, opened through the proxy
    user_id, name = live_user("proxied")
    session = live_session(proxy, name)
    response = session.get(proxy + "/stream", stream=True, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    reader = SSEReader(response)
    try:
        reader.wait_for(lambda r: r.retry is not None, 30, "the retry hint through the proxy")

        # When events are published one by one
        for n in range(3):
            with live_app.app_context():
                live.publish(user_id, events.PROGRESS, {"task_id": "t", "progress": n})

            # Then each one arrives while the stream stays open
            received = reader.wait_for_events(n + 1, timeout=5)
            assert received[-1]["data"]["progress"] == n
    finally:
        reader.close()
