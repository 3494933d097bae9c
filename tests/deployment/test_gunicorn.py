"""The app served by the real gunicorn, configured by gunicorn.conf.py."""

import os
import socket
from urllib.parse import urlsplit

import requests

from devkit.services import wait_until


def test_gunicorn_serves_the_login_page_with_local_bootstrap(gunicorn_server):
    response = requests.get(gunicorn_server + "/auth/login", timeout=5)
    assert response.status_code == 200
    assert "Sign in" in response.text
    assert "cdn" not in response.text.lower()
    css = requests.get(gunicorn_server + "/bootstrap/static/css/bootstrap.min.css", timeout=5)
    assert css.status_code == 200 and len(css.content) > 100_000


def test_gunicorn_redirects_anonymous_visitors_to_login(gunicorn_server):
    response = requests.get(gunicorn_server + "/explore", allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_a_connection_with_requests_queued_does_not_hold_up_another(
    live_stacks, gunicorn_server, database
):
    # Given two keep-alive connections to the one worker, both answered once already
    address = urlsplit(gunicorn_server)
    marker, queued = os.urandom(4).hex(), 200
    with Connection(address, marker) as busy, Connection(address, marker) as other:
        for connection in (busy, other):
            connection.send("warm-up")
            connection.wait_for_responses(1)
        # When the first has 200 requests queued and being served, and the second asks for a page
        busy.send(*(f"busy={marker}&n={n}" for n in range(queued)))
        busy.wait_for_responses(2)
        other.send(f"other={marker}")
        other.wait_for_responses(2)
        busy.wait_for_responses(queued + 1)
    # Then the second is served in turn, not after every request queued on the first
    wait_until(
        lambda: f"busy={marker}&n={queued - 1}" in live_stacks.gunicorn_log(gunicorn_server),
        30,
        "the access log of the last queued request",
    )
    order = [
        line for line in live_stacks.gunicorn_log(gunicorn_server).splitlines() if marker in line
    ]
    order = [line for line in order if "warm-up" not in line]
    served_before = next(i for i, line in enumerate(order) if f"other={marker}" in line)
    assert served_before < queued // 4, f"{served_before} queued requests were served first"


class Connection:
    """A raw keep-alive HTTP/1.1 connection that sends requests and counts responses."""

    def __init__(self, address, marker: str) -> None:
        self.host, self.marker = address.netloc, marker
        self.sock = socket.create_connection((address.hostname, address.port), timeout=30)
        self.received = b""

    def send(self, *queries: str) -> None:
        head = "GET /auth/login?{}&m={} HTTP/1.1\r\nHost: {}\r\n\r\n"
        self.sock.sendall(
            b"".join(head.format(q, self.marker, self.host).encode() for q in queries)
        )

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *_exc) -> None:
        self.sock.close()

    def wait_for_responses(self, count: int) -> None:
        while self.received.count(b"HTTP/1.1 200") < count:
            chunk = self.sock.recv(65536)  # the socket's timeout bounds the wait
            assert chunk, f"connection closed after {self.received.count(b'HTTP/1.1 ')} responses"
            self.received += chunk
