"""Task state for pages and scripts: always read from the Task table."""

import re

import dramatiq
from flask import Blueprint, abort, flash, has_request_context, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from microblog.errors import wants_json
from microblog.extensions import db
from microblog.i18n import LazyMessage, _l, for_scripts, translated
from microblog.jobs import control, events
from microblog.jobs.launch import QueueUnavailable, TaskAlreadyActive, launch
from microblog.jobs.models import Task, tasks_to_show
from microblog.jobs.registry import job_types
from microblog.live.stream import page_stream_url
from microblog.urls import safe_next

bp = Blueprint("jobs", __name__, url_prefix="/tasks")

QUEUE_UNAVAILABLE = _l("The job queue is unreachable. Please try again.")
_TASK_ID = re.compile(r"[0-9a-f]{32}")  # what new_task_id makes

# The texts of the task cards; the template (_tasks.html) uses the same ones.
for_scripts({
    "task.queued": _l("Waiting to start"),
    "task.succeeded": _l("Done"),
    "task.failed": _l("Failed"),
    "task.cancelled": _l("Cancelled"),
    "task.failed_reason": _l("The job failed."),
    "task.finished": _l("Finished %(time)s"),
    "task.waiting": _l("Waiting."),
    "task.retrying": _l("Trying again at %(time)s (attempt %(attempt)s of %(attempts)s)."),
    "task.retrying_open": _l("Trying again at %(time)s (attempt %(attempt)s)."),
    "task.not_started": _l("The job could not start. Please try again."),
    "unreachable": _l("That did not reach the server. Please try again."),
    "close": _l("Close"),
})  # fmt: skip


def own_task_or_404(task_id: str) -> Task:
    """Return the signed-in user's task; anyone else's is indistinguishable from none."""
    return task_or_404(task_id, user_id=current_user.id)


def task_or_404(task_id: str, user_id: int | None = None) -> Task:
    """Return the task, of that user if one is given."""
    if not _TASK_ID.fullmatch(task_id):
        abort(404)
    query = select(Task).where(Task.id == task_id)
    if user_id is not None:
        query = query.where(Task.user_id == user_id)
    return db.session.scalar(query) or abort(404)


@bp.route("/<task_id>")
@login_required
def show(task_id: str):
    task = own_task_or_404(task_id)
    return jsonify(events.localized(events.task_event(task)))


@bp.route("/start/<name>", methods=["POST"])
@login_required
def start(name: str):
    """Start a job of the signed-in user (any job type of the app's ``JOB_MODULES``)."""
    job_type = job_types().get(name) or abort(404)
    job = translated(job_type.description)
    return start_and_answer(
        job_type.actor, _("%(job)s: started.", job=job), _("%(job)s: already under way.", job=job)
    )


def start_and_answer(
    actor: dramatiq.Actor,
    started: str,
    busy: str,
    unavailable: str | LazyMessage = QUEUE_UNAVAILABLE,
    back: str | None = None,
):
    """Start a job of the signed-in user and say how that went (202, 409 or 503)."""
    try:
        task = launch(actor, current_user.id)
    except TaskAlreadyActive:
        return answer(None, 409, "warning", busy, back)
    except QueueUnavailable:
        return answer(None, 503, "danger", unavailable, back)
    return answer(task, 202, "info", started, back)


@bp.route("/<task_id>/cancel", methods=["POST"])
@login_required
def cancel(task_id: str):
    return cancel_and_answer(own_task_or_404(task_id))


TOO_LATE_TO_CANCEL = _l("Too late to cancel: the result is already on its way.")


def cancel_and_answer(task: Task, reason: str | None = None):
    """Cancel the task and say how that went (the user's card and the admin page)."""
    try:
        control.cancel(task, reason)
    except control.TooLateToCancel:
        return answer(task, 409, "warning", TOO_LATE_TO_CANCEL)
    except control.NotCancellable:
        return answer(task, 409, "warning", _("That job has already ended."))
    return answer(task, 200, "info", _("%(job)s: cancelled.", job=translated(task.description)))


@bp.route("/<task_id>/retry", methods=["POST"])
@login_required
def retry(task_id: str):
    return retry_and_answer(own_task_or_404(task_id))


def retry_and_answer(task: Task):
    """Start the task's job again and say how that went (the user's card and the admin page)."""
    try:
        task = control.retry(task)
    except control.NotRetryable:
        return answer(task, 409, "warning", _("Only a failed or cancelled job can be tried again."))
    except TaskAlreadyActive:
        return answer(task, 409, "warning", _("That job is already running."))
    except QueueUnavailable:
        return answer(task, 503, "danger", QUEUE_UNAVAILABLE)
    return answer(task, 202, "info",
                  _("%(job)s: started again.", job=translated(task.description)))  # fmt: skip


@bp.route("/<task_id>/dismiss", methods=["POST"])
@login_required
def dismiss(task_id: str):
    task = own_task_or_404(task_id)
    try:
        control.dismiss(task)
    except control.NotDismissable:
        return answer(task, 409, "warning", _("That job is still running."))
    return answer(task, 200, "info", _("Closed."))


def answer(task: Task | None, status: int, level: str, message: str, back: str | None = None):
    """Answer a script with JSON, a browser with a flash and a redirect to where it was (the
    form's ``next``, else ``back``, else the home page)."""
    if wants_json():
        return {"message": str(message), "level": level, "task_id": task and task.id}, status
    flash(message, level)
    target = safe_next(request.form.get("next")) or back or url_for("posts.index")
    return redirect(target, 303)


# The pages that show finished tasks' cards: where the user starts jobs and comes back to.
FINISHED_CARDS_ON = ("posts.index", "posts.user")


@bp.app_context_processor
def inject_tasks() -> dict:
    """Give every page the cards of the user's active tasks; the home page and the user's own
    profile also those of the finished tasks not yet seen (see ``tasks_to_show``).

    The cards a page shows move only by events: a page never drops a card by itself, and a
    reload shows what this function says (docs/behaviour.md, "Task cards").
    """
    if not has_request_context() or not current_user.is_authenticated:  # e.g. emails
        return {"tasks": []}
    page_stream_url()  # the resume point first: the cards must hold everything before it
    finished = request.endpoint in FINISHED_CARDS_ON and (
        request.view_args.get("username", current_user.username) == current_user.username
    )
    with_results = [name for name, t in job_types().items() if t.result_endpoint]
    tasks = tasks_to_show(current_user.id, with_results, finished)
    return {"tasks": [events.localized(events.task_event(t)) for t in tasks]}
