"""The emails of a password reset, sent by a worker: the link, and "your password changed"
(after any change of password: a reset, the Account page, an operator).

A web request only enqueues an errand carrying the address typed in (or the user's id), so a
request for an address with no account does exactly the same work as one for a registered
address, and no request waits on the mail relay. Each errand sends at most once: the first
attempt to hand the message data to the relay marks its Dramatiq message in Redis, and a
redelivered or retried message that finds the mark sends nothing.
"""

import logging

import redis
from dramatiq.middleware import CurrentMessage
from flask import current_app
from flask_mail import Message
from sqlalchemy import select

from microblog import mailer
from microblog.auth.models import User, canonical
from microblog.auth.sessions import password_changed
from microblog.extensions import db
from microblog.i18n import _l, current_language, email_in
from microblog.jobs.worker.runner import errand
from microblog.recovery.tokens import make_token
from microblog.urls import public_url

log = logging.getLogger(__name__)

SENT_MARK_SECONDS = 24 * 3600  # longer than any message's retries last


def send_once(message: Message, what: str) -> None:
    """Send ``message`` unless an earlier run of the current errand message may have."""
    current = CurrentMessage.get_current_message()
    mark = f"errand-mail:{current.message_id}" if current else None

    def before_data() -> None:
        broker = current_app.extensions["dramatiq"]  # where the errand's message lives
        if mark and not broker.client.set(mark, 1, nx=True, ex=SENT_MARK_SECONDS):
            raise AlreadySent

    try:
        mailer.send(message, before_data=before_data)
    except AlreadySent:
        log.warning("%s: an earlier attempt may have sent it already; not sent again", what)
    except mailer.DeliveryUncertain as error:
        log.warning("%s: the relay may have it (%s); not sent again", what, error)


class AlreadySent(Exception):
    """An earlier run of this message reached the point of handing its data to the relay."""


@errand()
def send_password_reset(email: str, locale: str | None = None) -> None:
    """Email a reset link to the account with this address, if there is one: in the account's
    language, else ``locale`` (the page's where it was asked for)."""
    user = db.session.scalar(select(User).where(User.email_key == canonical(email)))
    if user is None:
        log.info("password reset asked for an address no account has")
        return
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    context = {
        "user": user,
        "link": public_url("recovery.reset_password", token=make_token(user)),
        "minutes": minutes,
    }
    message = email_in(
        user.language or locale,
        user.email,
        _l("Reset your microblog password"),
        "recovery/reset_email",
        **context,
    )
    db.session.commit()  # nothing of the database is held while the relay talks
    send_once(message, f"password reset for user {user.id}")


@errand()
def send_password_changed(user_id: int, locale: str | None = None) -> None:
    """Tell the user their password was just changed, with the way back if it was not them;
    in their language, else ``locale`` (the page's where it was changed)."""
    user = db.session.get(User, user_id)
    if user is None:
        return
    context = {"user": user, "link": public_url("recovery.reset_password_request")}
    message = email_in(
        user.language or locale,
        user.email,
        _l("Your microblog password was changed"),
        "recovery/changed_email",
        **context,
    )
    db.session.commit()
    send_once(message, f"password-changed notice for user {user_id}")


@password_changed.connect
def notify_password_changed(_app: object, user_id: int) -> None:
    """Queue the "your password was changed" email; a change never fails for want of it."""
    try:
        send_password_changed.send(user_id, current_language())
    except redis.RedisError as error:
        log.warning("user %s: password-changed email not queued: %s", user_id, error)
