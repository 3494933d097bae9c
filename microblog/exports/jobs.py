"""The export job: build the archive, store it, email it."""

from datetime import timedelta
from typing import IO

from flask import current_app
from flask_babel import format_number, ngettext
from sqlalchemy import delete, insert, select

from microblog.auth.models import User
from microblog.exports.archive import spooled_file, write_archive
from microblog.exports.email import NOT_CONFIRMED, OVER_CEILING, deliver_export_email
from microblog.exports.models import CHUNK_SIZE, Archive, ArchiveChunk
from microblog.extensions import db
from microblog.i18n import N_, _l, format_size
from microblog.jobs.attempts import Attempt, hold
from microblog.jobs.models import Task
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.registry import chore
from microblog.jobs.worker.runner import JobError, job
from microblog.models import utcnow
from microblog.posts.models import posts_done

NOT_EMAILED = {
    NOT_CONFIRMED: _l("not emailed: your email address is not confirmed yet"),
    OVER_CEILING: _l("not emailed: your address had too many emails from us for now"),
}


def archive_summary(result: dict) -> str:
    """Describe an export's archive in the current language: "12,345 posts · 1.2 MB", and
    why it was not emailed, if it was not."""
    count = result["posts"]
    posts = ngettext("%(count)s post", "%(count)s posts", count, count=format_number(count))
    summary = f"{posts} · {format_size(result['bytes'])}"
    if result.get("not_emailed") in NOT_EMAILED:
        summary += f" · {NOT_EMAILED[result['not_emailed']]}"
    return summary


@job(
    description=_l("Exporting your posts"),
    result_endpoint="exports.download",
    result_label=_l("Download your archive"),
    summary=archive_summary,
    counts=posts_done,
)
def export_posts(task: Task, attempt: Attempt, progress: ProgressReporter) -> dict:
    """Export the user's posts; a redelivered run reuses a stored archive and sent email.
    Return the archive's figures for the card's summary."""
    user = db.session.get(User, task.user_id)
    if user is None:
        raise JobError(N_("Your account no longer exists."))
    archive = db.session.get(Archive, task.id) or build_and_store(task, user, attempt, progress)
    result = {"posts": archive.post_count, "bytes": archive.size}
    if archive.emailed_at is None:
        not_sent = deliver_export_email(user, archive, attempt, task.locale)
        if not_sent:
            result["not_emailed"] = not_sent
    return result


def build_and_store(
    task: Task, user: User, attempt: Attempt, progress: ProgressReporter
) -> Archive:
    """Write the archive to a spooled file, then store it in chunks in one transaction."""
    with spooled_file() as buffer:
        post_count, json_size = write_archive(user, buffer, progress)
        archive = Archive(
            task_id=task.id,
            filename=f"microblog-{user.username}-{utcnow():%Y%m%d-%H%M%S}.json.gz",
            size=buffer.tell(),
            json_size=json_size,
            post_count=post_count,
            expires_at=utcnow() + timedelta(days=current_app.config["EXPORT_RETENTION_DAYS"]),
        )
        db.session.add(archive)
        db.session.flush()  # the chunks refer to it
        store_chunks(task.id, buffer)
        hold(db.session, attempt)  # only the task's current attempt stores it
        db.session.commit()
    return archive


def store_chunks(task_id: str, buffer: IO[bytes]) -> None:
    buffer.seek(0)
    seq = 0
    while data := buffer.read(CHUNK_SIZE):
        # A Core insert keeps no ORM object alive: one chunk in memory at a time.
        db.session.execute(insert(ArchiveChunk).values(task_id=task_id, seq=seq, data=data))
        seq += 1


@chore
def delete_expired_archives() -> int:
    """Delete archives past their expiry date; return how many went."""
    expired = list(
        db.session.scalars(select(Archive.task_id).where(Archive.expires_at <= utcnow()))
    )
    if expired:
        db.session.execute(delete(ArchiveChunk).where(ArchiveChunk.task_id.in_(expired)))
        db.session.execute(delete(Archive).where(Archive.task_id.in_(expired)))
        db.session.commit()
    return len(expired)
