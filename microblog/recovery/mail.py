"""The emails about an account, sent by a worker: a password reset link, "your password
changed" (after any change of password: a reset, the Account page, an operator), the link that
confirms an address, and "your address is being changed" to the old one.

A web request only enqueues an errand carrying the address typed in (or the user's id), so a
request for an address with no account does exactly the same work as one for a registered
address, and no request waits on the mail relay. A notice or a confirmation link that cannot be
queued while the broker is away is kept in the database and sent once it is back
(:func:`microblog.jobs.launch.send_or_keep`).

Each errand sends at most once: the first attempt to hand the message data to the relay
marks its Dramatiq message in Redis, and a redelivered or retried message that finds the mark
sends nothing. A relay that answers "no" does not have the message, so the mark is taken back:
a temporary refusal is retried, a permanent one logged as a WARNING naming the address's domain.
"""

import logging

from dramatiq.middleware import CurrentMessage
from flask import current_app
from flask_mail import Message
from sqlalchemy import select

from microblog import mailer
from microblog.auth.addresses import address_change_wanted, address_to_confirm, confirmation_wanted
from microblog.auth.models import User, canonical
from microblog.auth.sessions import password_changed
from microblog.extensions import db
from microblog.i18n import _l, current_language, email_in
from microblog.jobs.launch import send_or_keep
from microblog.jobs.worker.runner import errand
from microblog.recovery.tokens import make_confirmation_token, make_token
from microblog.urls import public_url

log = logging.getLogger(__name__)

SENT_MARK_SECONDS = 24 * 3600  # longer than any message's retries last


def send_once(message: Message, what: str, purpose: mailer.Purpose) -> None:
    """Send ``message`` unless an earlier run of the current errand message may have."""
    current = CurrentMessage.get_current_message()
    mark = f"errand-mail:{current.message_id}" if current else None
    broker = current_app.extensions["dramatiq"]  # where the errand's message lives
    taken = False

    def before_data() -> None:
        nonlocal taken
        if mark and not broker.client.set(mark, 1, nx=True, ex=SENT_MARK_SECONDS):
            raise AlreadySent
        taken = True

    try:
        mailer.send(message, before_data=before_data, purpose=purpose)
    except AlreadySent:
        log.warning("%s: an earlier attempt may have sent it already; not sent again", what)
    except mailer.DeliveryUncertain as error:
        log.warning("%s: the relay may have it (%s); not sent again", what, error)
    except mailer.NotSent:
        pass  # the mailer said why
    except mailer.Refused as error:
        if taken:
            broker.client.delete(mark)  # the relay does not have it: a retry may send it
        if not isinstance(error, mailer.Rejected):
            raise  # "try later": retried like any outage of the relay
        domains = ", ".join(sorted(mailer.domains(message.send_to)))
        log.warning("%s: the relay refused it for good, for an address at %s: %s",
                    what, domains, error)  # fmt: skip


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
    send_once(message, f"password reset for user {user.id}", mailer.Purpose.RESET)


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
    send_once(message, f"password-changed notice for user {user_id}", mailer.Purpose.NOTICE)


@errand()
def send_confirmation(user_id: int, locale: str | None = None) -> None:
    """Email the link that confirms the user's address (or the one they are changing to)."""
    user = db.session.get(User, user_id)
    address = address_to_confirm(user) if user else None
    if address is None:
        return  # confirmed meanwhile, or the account is gone
    hours = current_app.config["CONFIRM_MAX_AGE"] // 3600
    link = public_url("recovery.confirm", token=make_confirmation_token(user, address))
    message = email_in(
        user.language or locale,
        address,
        _l("Confirm your microblog email address"),
        "recovery/confirm_email",
        user=user,
        link=link,
        hours=hours,
    )
    db.session.commit()
    send_once(message, f"address confirmation for user {user_id}", mailer.Purpose.CONFIRMATION)


@errand()
def send_address_change_notice(user_id: int, locale: str | None = None) -> None:
    """Tell the account's current address that a change to another was asked for (no link)."""
    user = db.session.get(User, user_id)
    if user is None or not user.pending_email:
        return
    message = email_in(
        user.language or locale,
        user.email,
        _l("Your microblog email address is being changed"),
        "recovery/address_change_email",
        user=user,
        domain=user.pending_email.rpartition("@")[2],
    )
    db.session.commit()
    send_once(message, f"address-change notice for user {user_id}", mailer.Purpose.NOTICE)


@password_changed.connect
def notify_password_changed(_app: object, user_id: int) -> None:
    """Queue the "your password was changed" email (kept while the broker is away)."""
    send_or_keep(send_password_changed, user_id, current_language())


@confirmation_wanted.connect
def send_confirmation_link(_app: object, user_id: int) -> None:
    """Queue the confirmation link (kept while the broker is away)."""
    send_or_keep(send_confirmation, user_id, current_language())


@address_change_wanted.connect
def notify_address_change(_app: object, user_id: int) -> None:
    """Queue the new address's confirmation link and the old address's notice."""
    send_or_keep(send_confirmation, user_id, current_language())
    send_or_keep(send_address_change_notice, user_id, current_language())
