"""Send a Flask-Mail message with a timeout on every step, and say when the relay may have it.

Flask-Mail opens ``smtplib.SMTP`` without a timeout, so a relay that accepts the connection and
never answers would hold the sending thread forever. Here every connect, read and write waits
at most ``MAIL_TIMEOUT`` seconds. The conversation is also split at the one point that matters
for sending at most once: until the message data is sent, a failure means the relay does not
have it; while the relay answers the data, a failure leaves it unknown.
"""

import smtplib
import time
from collections.abc import Callable

from flask import current_app
from flask_mail import BadHeaderError, Message, sanitize_address, sanitize_addresses


class DeliveryUncertain(ConnectionError):
    """The connection failed after the message data went out: the relay may have it."""


def open_relay(timeout: float | None = None) -> smtplib.SMTP:
    """Connect to the configured relay, with TLS and login as configured.

    Every step waits at most ``timeout`` seconds (default ``MAIL_TIMEOUT``).
    """
    config = current_app.config
    relay = smtplib.SMTP_SSL if config["MAIL_USE_SSL"] else smtplib.SMTP
    timeout = config["MAIL_TIMEOUT"] if timeout is None else timeout
    smtp = relay(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=timeout)
    try:
        if config["MAIL_USE_TLS"]:
            smtp.starttls()
        if config["MAIL_USERNAME"] and config["MAIL_PASSWORD"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


def send(message: Message, before_data: Callable[[], None] = lambda: None) -> None:
    """Send ``message``; call ``before_data`` once the relay has accepted its envelope.

    :raise smtplib.SMTPException, OSError: the relay refused or could not be reached; it does
        not have the message.
    :raise DeliveryUncertain: the relay may have the message.
    """
    if message.has_bad_headers():
        raise BadHeaderError
    message.date = message.date or time.time()
    payload = message.as_bytes()
    if current_app.extensions["mail"].suppress:  # MAIL_SUPPRESS_SEND, or TESTING by default
        return
    smtp = open_relay()
    try:
        smtp.ehlo_or_helo_if_needed()
        code, reply = smtp.mail(sanitize_address(message.sender))
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, message.sender)
        for recipient in sanitize_addresses(message.send_to):
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        before_data()
        try:
            smtp.data(payload)
        except smtplib.SMTPResponseException:
            raise  # the relay answered "no": it does not have the message
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryUncertain(str(error) or type(error).__name__) from error
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass  # the message is accepted; a goodbye that fails changes nothing
    finally:
        smtp.close()
