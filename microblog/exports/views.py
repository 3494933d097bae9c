"""Start an export and download the archive."""

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive, archive_chunks
from microblog.extensions import db
from microblog.jobs.launch import QueueUnavailable, TaskAlreadyActive, launch
from microblog.jobs.models import TaskStatus
from microblog.jobs.views import own_task_or_404

bp = Blueprint("exports", __name__, url_prefix="/exports")


@bp.route("", methods=["POST"])
@login_required
def start():
    """Start an export; answer JSON to scripts and redirect browsers without JavaScript."""
    try:
        task = launch(export_posts, current_user.id)
    except TaskAlreadyActive:
        status, level = 409, "warning"
        message = "An export of your posts is already in progress."
    except QueueUnavailable:
        status, level = 503, "danger"
        message = "The export could not start: the job queue is unreachable. Please try again."
    else:
        status, level = 202, "info"
        message = "Your export has started. We will email you when it is ready."
    if request.accept_mimetypes.best == "application/json":
        task_id = task.id if status == 202 else None
        return {"message": message, "level": level, "task_id": task_id}, status
    flash(message, level)
    return redirect(url_for("posts.user", username=current_user.username), 303)


@bp.route("/<task_id>/download")
@login_required
def download(task_id: str):
    task = own_task_or_404(task_id)
    archive = db.session.get(Archive, task.id)
    if task.status != TaskStatus.SUCCEEDED:
        return render_template("exports/unavailable.html", task=task), 409
    if archive is None or archive.is_expired():
        return render_template("exports/expired.html", task=task), 410
    response = Response(stream_with_context(archive_chunks(task.id)), mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{archive.filename}"'
    response.headers["Content-Length"] = str(archive.size)
    response.headers["Cache-Control"] = "private, no-store"
    return response
