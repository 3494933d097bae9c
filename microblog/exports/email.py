"""The email that delivers an export."""

import gzip

from flask import current_app, render_template
from flask_mail import Message

from microblog.auth.models import User
from microblog.exports.models import Archive, archive_chunks
from microblog.extensions import mail
from microblog.jobs.models import Task
from microblog.urls import public_url


def send_export_email(user: User, task: Task, archive: Archive) -> None:
    """Send the download link, with the JSON attached when it is small enough."""
    context = {
        "user": user,
        "archive": archive,
        "link": public_url("exports.download", task_id=task.id),
        "attached": archive.json_size <= current_app.config["EXPORT_ATTACHMENT_LIMIT"],
    }
    message = Message(
        subject="Your microblog export is ready",
        recipients=[user.email],
        body=render_template("exports/email.txt", **context),
        html=render_template("exports/email.html", **context),
    )
    if context["attached"]:
        message.attach("posts.json", "application/json", read_json(task.id))
    # The same id on every attempt lets mail systems drop a duplicate of a retried send.
    message.msgId = f"<export-{task.id}@microblog>"
    mail.send(message)


def read_json(task_id: str) -> bytes:
    """Return the archive's JSON, decompressed (only called below the attachment limit)."""
    return gzip.decompress(b"".join(archive_chunks(task_id)))
