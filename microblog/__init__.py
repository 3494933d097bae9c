"""microblog: a Flask microblog with background jobs and live progress.

The package itself imports nothing: a process that needs one part of it (the worker's metrics
server, gunicorn's master) does not load the whole site. :func:`create_app` builds the site
with :mod:`microblog.factory`.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> "Flask":
    """Build the application; only entry points (wsgi.py, tasks.py, tests) call this."""
    from microblog.factory import create_app as build

    return build(test_config)
