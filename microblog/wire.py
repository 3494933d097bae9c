"""Requests as they arrive: the body's framing and size, and the cookies, checked before any
extension or view reads them.

gunicorn hands a chunked body to the app as a stream that raises on a malformed chunk, and
Werkzeug reads a body without Content-Length only up to ``MAX_CONTENT_LENGTH`` and then stops
without a word. So one rule for every body: read it whole here, up to the limit; a body that
is not valid HTTP framing is a 400, one over the limit a 413, and the app below sees a plain
body with its length. Cookies are parsed by Flask-Login and the session before any view, and
a signature holding a non-ASCII character made ``hmac.compare_digest`` raise: every cookie
this site sets is printable ASCII, so a cookie that is not is dropped, as if never sent.
"""

import io
from collections.abc import Callable, Iterable

from flask import Flask, Request, abort, request
from flask_babel import gettext as _
from werkzeug.utils import cached_property

BODY_ERROR = "microblog.body_error"  # environ key: the status a body's framing or size earned
READ_SIZE = 64 * 1024


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable() and " " not in value


class CheckedRequest(Request):
    """A request whose cookies hold only values this site could have set."""

    @cached_property
    def cookies(self):  # type: ignore[override]
        # Werkzeug's own parse (which caches under this name too); ours, set last, is kept.
        parsed = super().cookies
        kept = [
            (name, value) for name, value in parsed.items(multi=True) if _printable_ascii(value)
        ]
        return self.parameter_storage_class(kept)


class BodyReader:
    """WSGI middleware: read a body sent without Content-Length whole, bounded by ``limit``."""

    def __init__(self, app: Callable, limit: int) -> None:
        self.app, self.limit = app, limit

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        # gunicorn gives a body without Content-Length only when it is chunked.
        if "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH"):
            body, error = self._read(environ["wsgi.input"])
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            if error:
                environ[BODY_ERROR] = error
        return self.app(environ, start_response)

    def _read(self, stream) -> tuple[bytes, int | None]:
        """Return the body (empty when refused) and the status that refuses it, if any."""
        parts, size = [], 0
        try:
            while chunk := stream.read(READ_SIZE):
                size += len(chunk)
                if size > self.limit:
                    return b"", 413
                parts.append(chunk)
        except Exception:  # gunicorn's framing errors share no base class narrower than this
            return b"", 400
        return b"".join(parts), None


def refuse_malformed() -> None:
    """Answer a body the middleware refused, before anything (CSRF included) reads the form;
    and a NUL in the query, which no text this site stores or looks up can hold (PostgreSQL
    refuses it in any string)."""
    status = request.environ.get(BODY_ERROR)
    if status == 413:
        abort(413)
    if status:
        abort(400, _("The request body is not valid HTTP (a malformed chunked encoding)."))
    if any("\x00" in name + value for name, value in request.args.items(multi=True)):
        abort(400, _("The address holds a NUL character."))


def init_app(app: Flask) -> None:
    """Install the checks; call first, so that they run before every extension's hooks."""
    app.request_class = CheckedRequest
    app.wsgi_app = BodyReader(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.before_request(refuse_malformed)
