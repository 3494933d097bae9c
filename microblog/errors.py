"""Error pages in the site's look, and JSON errors for clients that ask for JSON."""

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from microblog.extensions import db


def _wants_json() -> bool:
    return request.accept_mimetypes.accept_json and not request.accept_mimetypes.accept_html


def handle_http_error(error: HTTPException):
    """Render any 4xx/5xx with its own status and a readable explanation."""
    if error.code and error.code >= 500:
        db.session.rollback()
    if _wants_json():
        return jsonify(error=error.name, message=error.description), error.code
    return render_template("errors/error.html", error=error), error.code


def handle_csrf_error(error: CSRFError):
    """Explain a missing or stale CSRF token instead of a bare 400."""
    error.description = (
        "The form was missing its security token or the token had expired. "
        "Reload the page and try again."
    )
    return handle_http_error(error)


def handle_unexpected_error(error: Exception):
    """Log the crash and show the 500 page; never leak the traceback."""
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
