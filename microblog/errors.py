"""Error pages in the site's look, and JSON errors for clients that ask for JSON.

A dependency away (the database restarting, locked past its timeout, Redis down) is no bug:
the request answers 503 with ``Retry-After`` on a page that needs nothing but the app itself,
each process logs one WARNING when the outage begins and one INFO line when it ends, and
nobody is mailed. Anything else unexpected is a 500, logged as an ERROR with its traceback.
"""

import logging
import threading

from flask import Flask, current_app, flash, g, jsonify, redirect, render_template, request
from flask_babel import format_number
from flask_babel import gettext as _
from flask_login.utils import login_url
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, Unauthorized

from microblog import i18n
from microblog.database import discard_session
from microblog.extensions import db, login_manager
from microblog.i18n import _l
from microblog.outages import is_outage

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def wants_json() -> bool:
    """Return whether the client prefers JSON to HTML: the one place that decides it."""
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == (
        "application/json"
    )


# Each status's name and, for an error raised without an explanation of its own, what it
# means, in the reader's language (Werkzeug's are English).
STATUS_TEXTS = {
    400: (_l("Bad Request"), _l("The request could not be understood.")),
    401: (_l("Unauthorized"), _l("Sign in first.")),
    403: (_l("Forbidden"), _l("You may not see this page.")),
    404: (_l("Not Found"), _l("There is no such page. If you typed the address, check it.")),
    405: (_l("Method Not Allowed"), _l("This address does not take that kind of request.")),
    409: (_l("Conflict"), _l("That clashes with a change made meanwhile. Reload and try again.")),
    410: (_l("Gone"), _l("This page is no longer here.")),
    413: (_l("Request Entity Too Large"), _l("The request is larger than this site accepts.")),
    414: (_l("Request URI Too Large"), _l("The address is longer than this site accepts.")),
    415: (_l("Unsupported Media Type"), _l("This site does not take that kind of content.")),
    429: (_l("Too Many Requests"), _l("Too many attempts. Please wait and try again.")),
    431: (_l("Request Header Fields Too Large"), _l("The request's headers are too large.")),
    500: (_l("Internal Server Error"),
          _l("Something went wrong on our side. Please try again in a moment.")),
    503: (_l("Service Unavailable"),
          _l("The site cannot answer right now. Please try again in a moment.")),
}  # fmt: skip


def alert_level(status: int) -> str:
    """How a page styles the message of an error status (Bootstrap's alert levels): a clash or
    a limit asks to wait or reload, anything else failed."""
    return "warning" if status in (409, 429) else "danger"


def status_texts(error: HTTPException) -> tuple[str, str]:
    """Return the error's name and explanation in the reader's language."""
    name, meaning = STATUS_TEXTS.get(error.code or 500, (error.name, error.description))
    explained = error.description != type(error).description  # a message of ours, translated
    return str(name), str(error.description if explained else meaning)


def handle_http_error(error: HTTPException):
    """Render any 4xx/5xx with its own status, headers and a readable explanation; a 503
    instead when the page cannot be made for a dependency's outage (it reads the session)."""
    try:
        return render_http_error(error)
    except Exception as failure:
        if is_outage(failure):
            return handle_outage(failure)
        raise


def render_http_error(error: HTTPException):
    if error.code and error.code >= 500:
        db.session.rollback()
    name, description = status_texts(error)
    if wants_json():
        response = jsonify(error=name, message=description, level=alert_level(error.code or 500))
    else:
        page = render_template("errors/error.html", title=name, code=error.code, name=name,
                               description=description)  # fmt: skip
        response = current_app.make_response(page)
    response.status_code = error.code or 500
    # Allow on a 405, WWW-Authenticate on a 401, Retry-After on a 429...
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_csrf_error(error: CSRFError):
    """Explain a missing or stale CSRF token instead of a bare 400."""
    error.description = _(
        "The form was missing its security token or the token had expired. "
        "Reload the page and try again."
    )
    return handle_http_error(error)


def handle_too_large(error: HTTPException):
    limit_kb = current_app.config["MAX_CONTENT_LENGTH"] // 1024
    error.description = _("The request is larger than this site accepts (%(limit)s KB).",
                          limit=format_number(limit_kb))  # fmt: skip
    return handle_http_error(error)


PLAIN_500 = "Something went wrong on our side. Please try again in a moment.\n"


def handle_unexpected_error(error: Exception):
    """Log the crash and show the 500 page; never leak the traceback. A dependency's outage
    is a 503 instead (see :func:`handle_outage`)."""
    if is_outage(error):
        return handle_outage(error)
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    try:
        return handle_http_error(InternalServerError())
    except Exception:  # the page itself failed (it reads the session): answer plainly
        current_app.logger.exception("The error page failed too")
        return current_app.response_class(PLAIN_500, 500, mimetype="text/plain")


class Outages:
    """What this process knows of its dependencies' outages: one WARNING as each begins, one
    INFO line when a request next succeeds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: set[str] = set()  # the dependencies away, as far as this process knows

    def began(self, dependency: str, error: Exception) -> None:
        with self._lock:
            if dependency in self.current:
                return
            self.current.add(dependency)
        log.warning("%s is unreachable; answering 503 until it is back (%s: %s)",
                    dependency, type(error).__name__, str(error).splitlines()[0][:200])  # fmt: skip

    def ended(self) -> None:
        with self._lock:
            ended, self.current = sorted(self.current), set()
        for dependency in ended:
            log.info("%s is back", dependency)


def dependency_of(error: Exception) -> str:
    module = type(error).__module__
    if module.startswith("redis"):
        return "Redis"
    if module.startswith(("sqlalchemy", "psycopg", "sqlite3")):
        return "the database"
    return "a dependency"


def handle_outage(error: Exception):
    """Answer 503 with ``Retry-After`` on a page that reads neither the database nor the
    session: in the browser's language, with no user menu."""
    discard_session()
    outages: Outages = current_app.extensions["microblog.outages"]
    outages.began(dependency_of(error), error)
    with i18n.language(i18n.browser_language()):
        name, description = (str(text) for text in STATUS_TEXTS[503])
        if wants_json():
            response = jsonify(error=name, message=description, level=alert_level(503))
        else:
            template = current_app.jinja_env.get_template("errors/unavailable.html")
            page = template.render(title=name, name=name, description=description,
                                   lang=i18n.current_language())  # fmt: skip
            response = current_app.response_class(page, mimetype="text/html")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def note_recovery(response):
    """After an outage, the first request that succeeds says the dependency is back."""
    outages: Outages = current_app.extensions["microblog.outages"]
    if outages.current and response.status_code < 500:
        outages.ended()
    return response


def handle_unauthorized():
    """Send browsers to the login page and come back; tell scripts 401 in JSON."""
    if wants_json():
        return handle_http_error(Unauthorized(_("Sign in first.")))
    if not g.get("sign_in_ended"):  # which said why already
        flash(_("Please sign in to see this page."), login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def init_app(app: Flask) -> None:
    app.extensions["microblog.outages"] = Outages()
    app.after_request(note_recovery)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(413, handle_too_large)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
    login_manager.unauthorized_handler(handle_unauthorized)
