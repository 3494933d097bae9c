"""``/admin/tasks``: every user's tasks, live, with cancel and retry; queues and workers.

Only accounts with the admin role (``flask users grant-admin NAME``) see these pages; for
everyone else, signed in or not, they do not exist (404), so they reveal nothing.
"""

import re
from datetime import UTC, datetime, timedelta

import redis
from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from microblog.auth.models import find_user
from microblog.extensions import csrf
from microblog.i18n import _l, for_scripts
from microblog.jobs import control
from microblog.jobs.models import TaskFilter, TaskStatus, find_tasks
from microblog.jobs.registry import job_types
from microblog.jobs.views import cancel_and_answer, retry_and_answer, task_or_404
from microblog.jobs.worker.liveness import live_workers, queue_stats, unknown_job_types
from microblog.live.channel import OPERATORS
from microblog.live.stream import sse, stream_url
from microblog.models import age, parse_duration, utcnow

# The texts admin.js shows; the template uses the same ones.
for_scripts({
    "status.queued": _l("queued"),
    "status.running": _l("running"),
    "status.succeeded": _l("succeeded"),
    "status.failed": _l("failed"),
    "status.cancelled": _l("cancelled"),
    "admin.done_of_total": _l("%(done)s of %(total)s"),
})  # fmt: skip

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf.exempt(bp)  # checked by admins_only, after the role

PAGE_SIZE = 50
TASK_NAME_LENGTH = 64  # Task.name's column
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,17})\.([0-9a-f]{32})")  # "<µs since the epoch>.<task id>"


@bp.before_request
def admins_only() -> None:
    """Answer 404 to everyone else, before anything else can tell that the page exists (the
    blueprint is exempt from the app-wide CSRF check, which would answer 400 first)."""
    if not (current_user.is_authenticated and current_user.is_admin):
        abort(404)
    if request.method == "POST" and current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect()


@bp.route("/tasks")
def tasks():
    where, before, errors = _filter_from(request.args)
    rows = [] if errors else find_tasks(where, PAGE_SIZE + 1, before)
    older = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        last = rows[-1][0]
        micros = (last.created_at - EPOCH) // timedelta(microseconds=1)
        args = request.args.to_dict(flat=False) | {"before": f"{micros}.{last.id}"}
        older = url_for("admin.tasks", **args)
    first_page = url_for("admin.tasks", **{k: v for k, v in request.args.lists() if k != "before"})
    try:
        broker = current_app.extensions["dramatiq"]
        queues, workers = queue_stats(broker), live_workers(broker)
    except redis.RedisError:
        queues = workers = None
    return render_template(
        "admin/tasks.html",
        title=_("Tasks"),
        rows=rows,
        older=older,
        first_page=first_page,
        errors=errors,
        queues=queues,
        workers=workers,
        unknown_job_types=unknown_job_types(workers) if workers else [],
        now=utcnow(),
        age=age,
        statuses=[str(status) for status in TaskStatus],
        job_types=list(job_types()),
        admin_stream_url=stream_url(OPERATORS, "admin.stream"),
    ), 400 if errors else 200


def _filter_from(args) -> tuple[TaskFilter, tuple[datetime, str] | None, list[str]]:
    """Read the page's filters; return them, the page's cursor, and what was wrong."""
    errors = []
    statuses = tuple(args.getlist("status"))
    if not set(statuses) <= {str(status) for status in TaskStatus}:
        errors.append("Status: not a task status.")
    user_id = None
    if username := args.get("user", "").strip():
        user = find_user(username)
        if user is None:
            errors.append(_("User: there is no user '%(name)s'.", name=username))
        else:
            user_id = user.id
    created_before = None
    if older_than := args.get("older_than", "").strip():
        duration = parse_duration(older_than)
        if duration is None:
            errors.append(
                _("Older than: write a duration like 90s, 30m, 12h or 7d (at most 100 years).")
            )
        else:
            created_before = utcnow() - duration
    before = None
    if "before" in args:
        match = _CURSOR.fullmatch(args["before"])
        if not match:
            abort(404, _("There is no such page."))
        before = (EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2))
    name = args.get("type", "").strip() or None
    if name is not None and not (len(name) <= TASK_NAME_LENGTH and name.isprintable()):
        errors.append("Type: not a job type.")
    return TaskFilter(statuses, user_id, name, created_before), before, errors


@bp.route("/tasks/<task_id>/cancel", methods=["POST"])
def cancel(task_id: str):
    return cancel_and_answer(task_or_404(task_id), control.CANCELLED_BY_OPERATOR)


@bp.route("/tasks/<task_id>/retry", methods=["POST"])
def retry(task_id: str):
    return retry_and_answer(task_or_404(task_id))


@bp.route("/stream")
def stream():
    """Every user's task events (the operators' channel), for the tasks page."""
    return sse.open_stream(OPERATORS, role=lambda user: user.is_admin)
