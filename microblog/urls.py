"""URLs built without a request: workers make links for events and emails."""

from typing import Any

from flask import current_app


def site_path(endpoint: str, **values: Any) -> str:
    """Return the site-relative URL of ``endpoint``, e.g. ``/exports/abc/download``."""
    adapter = current_app.url_map.bind(
        "localhost", script_name=current_app.config["APPLICATION_ROOT"]
    )
    return adapter.build(endpoint, values)


def public_url(endpoint: str, **values: Any) -> str:
    """Return the absolute URL of ``endpoint`` under ``PUBLIC_URL``, for emails."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + site_path(endpoint, **values)
