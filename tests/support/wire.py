"""Raw HTTP/1.1 for the hostile-input tests: bytes on a socket, as no client library sends them."""

import re
import socket
import string
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")
CONTROL = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))  # C0, DEL and C1


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


def send_raw(base_url: str, head: str, body: bytes = b"", timeout: float = 10) -> RawResponse:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` on a new
    connection, with ``Connection: close``; return the parsed answer."""
    address = urlsplit(base_url)
    request = head.rstrip("\r\n").encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # the server answered before reading all
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):  # the socket's timeout bounds each wait
                received += chunk
        except ConnectionResetError:  # closed with our unread bytes in its buffer: answer kept
            pass
    return parse_response(received)


def parse_response(received: bytes) -> RawResponse:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, f"not an HTTP response: {received[:300]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(match.group(1)), headers, body)


def chunked(body: bytes, size: int = 4096) -> bytes:
    """Encode ``body`` in chunks of ``size`` bytes, as Transfer-Encoding: chunked sends it."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + b"0\r\n\r\n"


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def csrf_token(session: requests.Session, base_url: str, path: str = "/") -> str:
    page = session.get(base_url + path, timeout=10).text
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def stays_on_site(base_url: str, location: str) -> bool:
    """Say whether a browser sent to ``location`` from ``base_url`` stays on this site.

    Browsers strip control characters and spaces around a URL, drop tabs and line breaks
    inside it, and read a backslash as a slash; read it as they do, then resolve it.
    """
    cleaned = location.strip(string.whitespace + CONTROL[:0x20] + " ")
    cleaned = cleaned.translate({9: None, 10: None, 13: None}).replace("\\", "/")
    target, base = urlsplit(urljoin(base_url + "/", cleaned)), urlsplit(base_url)
    return (target.scheme, target.netloc) == (base.scheme, base.netloc)
