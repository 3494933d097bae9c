"""Start an export and download the archive."""

import re
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    render_template,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive, archive_chunks
from microblog.extensions import db
from microblog.jobs import control
from microblog.jobs.models import TaskStatus
from microblog.jobs.views import own_task_or_404, start_and_answer
from microblog.throttle import limit

bp = Blueprint("exports", __name__, url_prefix="/exports")


def user_key() -> str:
    return f"user:{current_user.id}"


@bp.route("", methods=["POST"])
@login_required
@limit("EXPORT_LIMIT_PER_USER", key=user_key)
def start():
    """Start an export; answer JSON to scripts and redirect browsers without JavaScript."""
    if current_user.email_confirmed:
        started = _("Your export has started. We will email you when it is ready.")
    else:
        started = _("Your export has started. It will be here to download when it is ready; "
                    "confirm your email address to get exports by email too.")  # fmt: skip
    return start_and_answer(
        export_posts,
        started=started,
        busy=_("An export of your posts is already in progress."),
        unavailable=_(
            "The export could not start: the job queue is unreachable. Please try again."
        ),
        back=url_for("posts.user", username=current_user.username),
    )


@bp.route("/<task_id>/download")
@login_required
def download(task_id: str):
    task = own_task_or_404(task_id)
    archive = db.session.get(Archive, task.id)
    if task.status != TaskStatus.SUCCEEDED:
        return render_template("exports/unavailable.html", task=task), 409
    if archive is None or archive.is_expired():
        return render_template("exports/expired.html", task=task), 410
    # The transfer may take minutes: hand the session's connection back to the pool now;
    # each chunk is read on a connection of its own (see archive_chunks).
    db.session.close()
    control.result_opened(task.id)
    db.session.close()
    response = Response(stream_with_context(archive_chunks(task.id)), mimetype="application/gzip")
    response.headers["Content-Disposition"] = attachment(archive.filename)
    response.headers["Content-Length"] = str(archive.size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def attachment(filename: str) -> str:
    """Return a Content-Disposition naming ``filename`` safely, whatever characters it holds.

    Browsers use the UTF-8 ``filename*``; the plain ``filename`` is an ASCII stand-in for old
    clients, and neither can break out of the header.
    """
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
