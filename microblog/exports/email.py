"""The email that delivers an export: at most once per export, as far as SMTP allows."""

import gzip
import logging

from flask import current_app
from flask_mail import Message
from sqlalchemy import update

from microblog import mailer
from microblog.auth.models import User
from microblog.exports.models import Archive, archive_chunks
from microblog.extensions import db
from microblog.i18n import N_, _l, email_in
from microblog.jobs.attempts import Attempt, hold
from microblog.jobs.worker.runner import JobError
from microblog.models import utcnow
from microblog.urls import public_url

log = logging.getLogger(__name__)

# Why an export's email was not sent, kept in its result for the card.
NOT_CONFIRMED, OVER_CEILING = "unconfirmed", "ceiling"
EMAIL_REJECTED = N_(
    "The mail server refused the email with your archive. Please check your email address, "
    "then try again."
)


def export_email(user: User, archive: Archive, locale: str | None = None) -> Message:
    """Return the email with the download link, and the JSON attached when small enough; in
    the user's language, else ``locale`` (the page's that started the export)."""
    context = {
        "user": user,
        "archive": archive,
        "link": public_url("exports.download", task_id=archive.task_id),
        "attached": archive.json_size <= current_app.config["EXPORT_ATTACHMENT_LIMIT"],
        "attachment_limit": current_app.config["EXPORT_ATTACHMENT_LIMIT"],
    }
    message = email_in(
        user.language or locale,
        user.email,
        _l("Your microblog export is ready"),
        "exports/email",
        **context,
    )
    if context["attached"]:
        message.attach("posts.json", "application/json", read_json(archive.task_id))
    # The same id on every attempt lets mail systems drop a duplicate of a retried send.
    message.msgId = f"<export-{archive.task_id}@microblog>"
    return message


def deliver_export_email(
    user: User, archive: Archive, attempt: Attempt, locale: str | None = None
) -> str | None:
    """Send the export's email (see :func:`export_email`) unless an earlier attempt may have;
    commits. Return None when it went (or may have), else why the site did not send it:
    ``NOT_CONFIRMED`` or ``OVER_CEILING``.

    The archive records "sending" just before the message data goes out and "sent" once the
    relay accepted it, each fenced by ``attempt``. A redelivered attempt that finds "sending"
    without "sent" cannot know whether the relay got the message, and does not send again.
    "Sending" also marks the task committed: from then on it cannot be cancelled, and a
    cancel that came first stops the attempt before the data goes out.

    :raise JobError: the relay refused the email for good (5xx).
    """
    task_id = archive.task_id
    if archive.email_sending_at is not None:
        log.warning("task %s: the email may have reached the relay already; not sent again",
                    task_id)  # fmt: skip
        return None
    message = export_email(user, archive, locale)
    db.session.commit()  # nothing of the database is held while the relay talks
    try:
        mailer.send(message, before_data=lambda: mark(task_id, attempt, email_sending_at=utcnow()))
    except mailer.Unconfirmed:
        return NOT_CONFIRMED
    except mailer.OverCeiling:
        return OVER_CEILING
    except mailer.Refused as error:
        mark(task_id, attempt, email_sending_at=None)  # refused: the relay does not have it
        if isinstance(error, mailer.Rejected):
            log.warning("task %s: the relay refused the email to an address at %s for good: %s",
                        task_id, user.email.rpartition("@")[2], error)  # fmt: skip
            raise JobError(EMAIL_REJECTED) from error
        raise
    mark(task_id, attempt, emailed_at=utcnow())
    return None


def mark(task_id: str, attempt: Attempt, **values) -> None:
    """Record an email step on the archive, if ``attempt`` still owns its task; commits.

    The task is committed exactly while the email is marked as going out: from "sending"
    until the relay refuses it (it does not have the message, so a cancel may stop it again).
    """
    committed = {"committed_at": values["email_sending_at"]} if "email_sending_at" in values else {}
    with db.engine.begin() as connection:
        hold(connection, attempt, **committed)
        connection.execute(update(Archive).where(Archive.task_id == task_id).values(**values))


def read_json(task_id: str) -> bytes:
    """Return the archive's JSON, decompressed (only called below the attachment limit)."""
    return gzip.decompress(b"".join(archive_chunks(task_id)))
