"""URLs: built without a request (workers make links for events and emails), and the one
rule for where a redirect may go."""

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, request, url_for

LONGEST_TARGET = 2048


def site_path(endpoint: str, **values: Any) -> str:
    """Return the site-relative URL of ``endpoint``, e.g. ``/exports/abc/download``."""
    adapter = current_app.url_map.bind(
        "localhost", script_name=current_app.config["APPLICATION_ROOT"]
    )
    return adapter.build(endpoint, values)


def public_url(endpoint: str, **values: Any) -> str:
    """Return the absolute URL of ``endpoint`` under ``PUBLIC_URL``, for emails."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + site_path(endpoint, **values)


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path of this site, else None: the one rule for every
    redirect a request names (login's ``next``, every task form's).

    Browsers drop tabs and line breaks from a URL and read a backslash as a slash, so
    "/\t/evil.com" and "/\\evil.com" are other hosts to them: a target holding any control
    character, space or backslash is refused whole rather than cleaned.
    """
    if not target or len(target) > LONGEST_TARGET or "\\" in target:
        return None
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def here() -> str:
    """Return where a form on this page should come back to: this page, if that is a safe
    target (a 404 page's path may not be), else the home page."""
    return safe_next(request.full_path.removesuffix("?")) or url_for("posts.index")
