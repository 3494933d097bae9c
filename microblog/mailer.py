"""The one place that sends mail: to whom the site may write, over a verified connection, and
whether the relay took the message.

Every email of the site goes through :func:`send`, which keeps three promises:

- **Only confirmed addresses.** A message of any purpose but a confirmation or a password
  reset goes only to addresses their account has confirmed (the rule is the accounts' own,
  registered with :func:`gate_addresses`); operators' addresses are theirs by configuration.
- **A ceiling per address.** No address receives more than ``MAIL_LIMIT_PER_ADDRESS_HOUR``
  emails in a clock hour and ``MAIL_LIMIT_PER_ADDRESS_DAY`` in a UTC day, counted in Redis
  across every process; past it the mail is dropped with one WARNING.
- **Verified TLS, and the relay's word.** STARTTLS and implicit TLS verify the relay's
  certificate and host name (the system's trust store, plus ``MAIL_CA_FILE``); a relay that
  does not offer STARTTLS while ``MAIL_USE_TLS`` is on never sees the credentials. A message
  counts as sent only once the relay accepts its data: a temporary refusal (4xx) is an outage,
  retried; a permanent one (5xx) is final.

Every connect, read and write waits at most ``MAIL_TIMEOUT`` seconds (Flask-Mail sets none).
The conversation is split at the one point that matters for sending at most once: until the
message data is sent, a failure means the relay does not have it; while the relay answers the
data, a failure leaves it unknown.
"""

import enum
import hashlib
import logging
import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable, Iterable

import redis
from flask import Flask, current_app
from flask_mail import BadHeaderError, Message, sanitize_address, sanitize_addresses

from microblog.i18n import N_
from microblog.redis_clients import broker_client

log = logging.getLogger(__name__)


class Purpose(enum.StrEnum):
    """Why an email is sent, which decides whether an unconfirmed address may get it."""

    CONFIRMATION = "confirmation"  # the link that confirms the address itself
    RESET = "reset"  # a password reset link: proves the address too
    NOTICE = "notice"  # anything else for a user: exports, "password changed"…
    OPERATORS = "operators"  # to ADMINS, addresses the operators configured


UNGATED = {Purpose.CONFIRMATION, Purpose.RESET, Purpose.OPERATORS}


class DeliveryUncertain(ConnectionError):
    """The connection failed after the message data went out: the relay may have it."""


class RelayUntrusted(ConnectionError):
    """The relay's connection cannot be trusted: an unverified certificate, or no STARTTLS
    while ``MAIL_USE_TLS`` is on. Nothing was sent, credentials included. Its ``reason`` is a
    message id for the user."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


CERTIFICATE_UNVERIFIED = N_("The mail server's certificate could not be verified.")
NO_STARTTLS = N_("The mail server does not offer a secure connection.")


class Refused(Exception):
    """The relay answered "no" to the message: it does not have it."""

    def __init__(self, code: int, reply: bytes | str) -> None:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        super().__init__(f"{code} {text}")
        self.code, self.reply = code, text


class TemporarilyRefused(Refused, ConnectionError):
    """A 4xx answer ("try later"): an outage of the relay, retried like one."""


class Rejected(Refused):
    """A 5xx answer: the relay will never take this message; retrying cannot help."""


class NotSent(Exception):
    """The site chose not to send the message (said once, by :func:`send`)."""


class Unconfirmed(NotSent):
    """A recipient has not confirmed the address, and the message is not one that may go to it."""


class OverCeiling(NotSent):
    """A recipient had as many emails as the ceiling allows for now."""


def gate_addresses(app: Flask, unconfirmed: Callable[[Iterable[str]], set[str]]) -> None:
    """Register the accounts' rule: ``unconfirmed(addresses)`` returns those an account has
    and has not confirmed (the others are confirmed, or nobody's)."""
    app.extensions["microblog.mail_gate"] = unconfirmed


def tls_context() -> ssl.SSLContext:
    """Return a context that verifies the relay's certificate chain and host name."""
    return ssl.create_default_context(cafile=current_app.config["MAIL_CA_FILE"] or None)


def open_relay(timeout: float | None = None) -> smtplib.SMTP:
    """Connect to the configured relay, with verified TLS and login as configured.

    Every step waits at most ``timeout`` seconds (default ``MAIL_TIMEOUT``).

    :raise RelayUntrusted: the certificate did not verify, or STARTTLS is not offered.
    """
    config = current_app.config
    timeout = config["MAIL_TIMEOUT"] if timeout is None else timeout
    host, port = config["MAIL_SERVER"], config["MAIL_PORT"]
    try:
        if config["MAIL_USE_SSL"]:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLCertVerificationError as error:
        raise RelayUntrusted(f"{host}: {error.verify_message}", CERTIFICATE_UNVERIFIED) from None
    try:
        if config["MAIL_USE_TLS"]:
            start_tls(smtp, host)
        if config["MAIL_USERNAME"] and config["MAIL_PASSWORD"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


def start_tls(smtp: smtplib.SMTP, host: str) -> None:
    """Upgrade the connection to verified TLS, or refuse to go on."""
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("starttls"):
        raise RelayUntrusted(f"{host} does not offer STARTTLS", NO_STARTTLS)
    try:
        smtp.starttls(context=tls_context())
    except ssl.SSLCertVerificationError as error:
        raise RelayUntrusted(f"{host}: {error.verify_message}", CERTIFICATE_UNVERIFIED) from None


def send(
    message: Message,
    before_data: Callable[[], None] = lambda: None,
    purpose: Purpose = Purpose.NOTICE,
) -> None:
    """Send ``message``; call ``before_data`` once the relay has accepted its envelope.

    :raise NotSent: no recipient may get it now (unconfirmed, or past the ceiling).
    :raise Refused: the relay answered "no" (:class:`TemporarilyRefused`, :class:`Rejected`).
    :raise smtplib.SMTPException, OSError: the relay could not be reached or trusted; it does
        not have the message.
    :raise DeliveryUncertain: the relay may have the message.
    """
    if message.has_bad_headers():
        raise BadHeaderError
    message.date = message.date or time.time()
    payload = message.as_bytes()
    if current_app.extensions["mail"].suppress:  # MAIL_SUPPRESS_SEND, or TESTING by default
        return
    recipients = allowed(sanitize_addresses(message.send_to), purpose)
    ceiling = Ceiling(recipients)
    try:
        converse(message.sender, recipients, payload, before_data)
    except DeliveryUncertain:
        raise  # the relay may have it: it counts
    except BaseException:
        ceiling.release()
        raise


def converse(
    sender: str, recipients: list[str], payload: bytes, before_data: Callable[[], None]
) -> None:
    """Hand the message to the relay; only a 2xx answer to its data means it has it."""
    smtp = open_relay()
    try:
        smtp.ehlo_or_helo_if_needed()
        answer(*smtp.mail(sanitize_address(sender)))
        for recipient in recipients:
            answer(*smtp.rcpt(recipient))
        before_data()
        try:
            code, reply = smtp.data(payload)
        except smtplib.SMTPResponseException as error:  # DATA itself refused
            answer(error.smtp_code, error.smtp_error)
            raise
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryUncertain(str(error) or type(error).__name__) from error
        answer(code, reply)
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass  # the message is accepted; a goodbye that fails changes nothing
    finally:
        smtp.close()


def answer(code: int, reply: bytes | str) -> None:
    """Go on after a 2xx answer; raise :class:`Refused` for any other."""
    if 200 <= code < 300:
        return
    if 400 <= code < 500:
        raise TemporarilyRefused(code, reply)
    if 500 <= code < 600:
        raise Rejected(code, reply)
    raise smtplib.SMTPResponseException(code, reply)  # not SMTP: an outage of some kind


def allowed(recipients: list[str], purpose: Purpose) -> list[str]:
    """Return the recipients this message may go to.

    :raise Unconfirmed: it may go to none of them.
    """
    gate = current_app.extensions.get("microblog.mail_gate")
    if purpose in UNGATED or gate is None:
        return recipients
    unconfirmed = gate(recipients)
    if unconfirmed:
        log.info("an email (%s) is not sent to %d unconfirmed address(es) at %s", purpose,
                 len(unconfirmed), ", ".join(sorted(domains(unconfirmed))))  # fmt: skip
    kept = [address for address in recipients if address not in unconfirmed]
    if not kept:
        raise Unconfirmed(", ".join(sorted(domains(unconfirmed))))
    return kept


def domains(addresses: Iterable[str]) -> set[str]:
    """Name addresses by their domain only: logs carry no one's address."""
    return {address.rpartition("@")[2] for address in addresses}


# Count one email for each address in this hour's and this day's windows, all or none.
_RESERVE = """
local granted = {}
for i = 1, #KEYS, 2 do
  local hour = redis.call('INCR', KEYS[i])
  if hour == 1 then redis.call('EXPIRE', KEYS[i], 3600) end
  local day = redis.call('INCR', KEYS[i + 1])
  if day == 1 then redis.call('EXPIRE', KEYS[i + 1], 86400) end
  if hour > tonumber(ARGV[1]) or day > tonumber(ARGV[2]) then
    redis.call('DECR', KEYS[i]); redis.call('DECR', KEYS[i + 1])
  else
    table.insert(granted, i)
  end
end
return granted
"""


class Ceiling:
    """Reserve one email for each recipient against the per-address ceiling, dropping those past
    it; :meth:`release` gives the reservations back when the relay did not get the message.

    With Redis unreachable, the mail is not counted (and a WARNING says so): a worker sending
    mail without Redis is rare, and losing an operator's alert for it would be worse.

    :raise OverCeiling: every recipient is past the ceiling.
    """

    def __init__(self, recipients: list[str]) -> None:
        config = current_app.config
        self._client = mail_redis()
        now = int(time.time())
        keys = []
        for address in recipients:
            tag = hashlib.sha256(address_key(address).encode()).hexdigest()[:32]
            key = f"mail-ceiling:{{{tag}}}"  # both windows of an address in one cluster slot
            keys += [f"{key}:h:{now // 3600}", f"{key}:d:{now // 86400}"]
        limits = (config["MAIL_LIMIT_PER_ADDRESS_HOUR"], config["MAIL_LIMIT_PER_ADDRESS_DAY"])
        try:
            granted = self._client.eval(_RESERVE, len(keys), *keys, *limits)
        except redis.RedisError as error:
            log.warning("mail ceiling not applied, Redis is unreachable: %s", error)
            self._keys: list[str] = []
            return
        self._keys = [key for index in granted for key in keys[index - 1 : index + 1]]
        refused = [recipients[i] for i in range(len(recipients)) if 2 * i + 1 not in granted]
        if refused:
            log.warning("an email is dropped: %d address(es) at %s had the most emails allowed "
                        "for now (%d an hour, %d a day)", len(refused),
                        ", ".join(sorted(domains(refused))), *limits)  # fmt: skip
            recipients[:] = [address for address in recipients if address not in refused]
        if not recipients:
            raise OverCeiling(", ".join(sorted(domains(refused))))

    def release(self) -> None:
        if not self._keys:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in self._keys:
                pipe.decr(key)
            pipe.execute()
        except redis.RedisError as error:
            log.warning("mail ceiling: a reservation not given back: %s", error)


def address_key(address: str) -> str:
    """Return the form that names one mailbox however its address is spelt."""
    return unicodedata.normalize("NFKC", address.strip()).casefold()


def mail_redis() -> redis.Redis:
    """Return the app's client for counting mail, on the broker's Redis, made once."""
    extensions = current_app.extensions
    if "microblog.mail_redis" not in extensions:
        extensions["microblog.mail_redis"] = broker_client(
            current_app.config, socket_timeout=2, socket_connect_timeout=2
        )
    return extensions["microblog.mail_redis"]
