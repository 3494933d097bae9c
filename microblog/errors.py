"""Error pages in the site's look, and JSON errors for clients that ask for JSON."""

from flask import Flask, current_app, flash, jsonify, redirect, render_template, request
from flask_login.utils import login_url
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, Unauthorized

from microblog.extensions import db, login_manager


def wants_json() -> bool:
    """Return whether the client prefers JSON to HTML: the one place that decides it."""
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == (
        "application/json"
    )


def handle_http_error(error: HTTPException):
    """Render any 4xx/5xx with its own status, headers and a readable explanation."""
    if error.code and error.code >= 500:
        db.session.rollback()
    if wants_json():
        response = jsonify(error=error.name, message=error.description)
    else:
        response = current_app.make_response(render_template("errors/error.html", error=error))
    response.status_code = error.code or 500
    # Allow on a 405, WWW-Authenticate on a 401, Retry-After on a 429...
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_csrf_error(error: CSRFError):
    """Explain a missing or stale CSRF token instead of a bare 400."""
    error.description = (
        "The form was missing its security token or the token had expired. "
        "Reload the page and try again."
    )
    return handle_http_error(error)


def handle_too_large(error: HTTPException):
    limit_kb = current_app.config["MAX_CONTENT_LENGTH"] // 1024
    error.description = f"The request is larger than this site accepts ({limit_kb} KB)."
    return handle_http_error(error)


PLAIN_500 = "Something went wrong on our side. Please try again in a moment.\n"


def handle_unexpected_error(error: Exception):
    """Log the crash and show the 500 page; never leak the traceback."""
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    try:
        return handle_http_error(InternalServerError())
    except Exception:  # the page itself failed (it reads the session): answer plainly
        current_app.logger.exception("The error page failed too")
        return current_app.response_class(PLAIN_500, 500, mimetype="text/plain")


def handle_unauthorized():
    """Send browsers to the login page and come back; tell scripts 401 in JSON."""
    if wants_json():
        return handle_http_error(Unauthorized("Sign in first."))
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(413, handle_too_large)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
    login_manager.unauthorized_handler(handle_unauthorized)
