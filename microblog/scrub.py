"""What error reports never carry: passwords, password hashes, tokens, SQL parameters, bodies.

One scrubber serves every report. Each log record is scrubbed as it is made (a record
factory), so every handler — stderr, the access log, the ``ADMINS`` mail, Sentry's
breadcrumbs — gets the same clean text; Sentry's events pass through :func:`scrub_event`.
The database engine hides SQL parameters at the source (``hide_parameters``); the patterns
here are the second line.

Scrubbed: the token of a link path (``/auth/reset_password/<token>``, ``/auth/confirm/<token>``),
anything that reads as a password hash, the value of any field whose name holds pass, secret,
token, key or csrf, and SQL ``[parameters: …]``. Sentry gets no request body, cookie or local
variable at all.
"""

import logging
import re
import traceback
from typing import Any

HIDDEN = "[hidden]"
SENSITIVE_NAME = re.compile(r"pass|secret|token|key|csrf|authorization|cookie", re.IGNORECASE)
TOKEN_PATH = re.compile(r"(/auth/(?:reset_password|confirm)/)[^/?#\s\"'<>]+")
PASSWORD_HASH = re.compile(r"\b(?:scrypt|pbkdf2)(?::[\w-]+)*\$[^\s'\"$]*\$[0-9a-fA-F]+")
NAMED_VALUE = re.compile(
    r"""(\b[\w-]*(?:pass|secret|token|csrf|_key)[\w-]*['"]?\s*[:=]\s*)"""
    r"""(?:'[^']*'|"[^"]*"|[^\s,;&}\])]+)""",
    re.IGNORECASE,
)
SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")


def scrub(text: str) -> str:
    """Return ``text`` without the secrets an error report could carry."""
    text = TOKEN_PATH.sub(r"\1[token]", text)
    text = PASSWORD_HASH.sub("[password hash]", text)
    text = SQL_PARAMETERS.sub("[parameters: hidden]", text)
    return NAMED_VALUE.sub(lambda match: match.group(1) + HIDDEN, text)


def scrub_event(event: dict[str, Any], _hint: object = None) -> dict[str, Any]:
    """Sentry's ``before_send``: drop the request's body, cookies and secret headers, and
    scrub every string of the event."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if not SENSITIVE_NAME.search(k)}
    return _scrub_value(event)


def scrub_breadcrumb(crumb: dict[str, Any], _hint: object = None) -> dict[str, Any]:
    """Sentry's ``before_breadcrumb``: the same rules as events."""
    return _scrub_value(crumb)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, dict):
        secret = {key for key, item in value.items() if SENSITIVE_NAME.search(str(key))
                  and _is_leaf(item)}  # fmt: skip
        return {key: HIDDEN if key in secret else _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def _is_leaf(value: Any) -> bool:
    return isinstance(value, str | bytes | int | float) and not isinstance(value, bool)


_made_by = logging.getLogRecordFactory()


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Make a log record whose message and traceback text are already scrubbed; the message's
    template stays in ``template`` (one error's name, whatever its details)."""
    record = _made_by(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: leave it to logging's own error report
        return record
    record.template = record.msg
    record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub(text)
    return record


def install() -> None:
    """Scrub every log record made in this process from now on (once, whoever asks)."""
    if logging.getLogRecordFactory() is not _scrubbed_record:
        logging.setLogRecordFactory(_scrubbed_record)
