"""Operators' and developers' commands: ``flask --app wsgi tasks …`` and ``jobs …``."""

import sys
import time
from datetime import timedelta

import click
import redis
from flask import current_app
from flask.cli import with_appcontext

from microblog.auth.cli import user_or_fail
from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs import control
from microblog.jobs.launch import QueueUnavailable, TaskAlreadyActive
from microblog.jobs.models import Task, TaskFilter, TaskStatus, find_tasks
from microblog.jobs.recording import Recording, replay
from microblog.jobs.worker.liveness import live_workers, queue_stats, unknown_job_types
from microblog.jobs.worker.reaper import run_pass
from microblog.models import DURATION_HINT, age, parse_duration, utcnow


class Duration(click.ParamType):
    """A span of time written like ``90s``, ``30m``, ``12h`` or ``7d``."""

    name = "duration"

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        duration = parse_duration(value)
        if duration is None:
            self.fail(
                f"{value!r} is not {DURATION_HINT}",
                param,
                ctx,
            )
        return duration


@click.group("tasks")
def tasks_cli() -> None:
    """See and control background tasks (the Task table)."""


@tasks_cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskStatus]), multiple=True,
              help="Only tasks in this status (repeatable).")  # fmt: skip
@click.option("--user", "username", help="Only this user's tasks.")
@click.option("--type", "job_type", help="Only tasks of this job type, e.g. export_posts.")
@click.option("--older-than", type=Duration(), help="Only tasks created before this long ago.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@with_appcontext
def list_tasks(status, username, job_type, older_than, limit) -> None:
    """List tasks, newest first."""
    user_id = user_or_fail(username).id if username else None
    before = utcnow() - older_than if older_than else None
    rows = find_tasks(TaskFilter(tuple(status), user_id, job_type, before), limit)
    now = utcnow()
    table = [("ID", "USER", "TYPE", "STATUS", "PROGRESS", "ATTEMPTS", "AGE", "ERROR")]
    for task, name in rows:
        error = (task.error or "")[:60]
        table.append((task.id, name, task.name, str(task.status), f"{task.progress}%",
                      str(task.attempts), age(task.created_at, now), error))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if not rows:
        click.echo("(no tasks)")


def task_or_fail(task_id: str) -> Task:
    task = db.session.get(Task, task_id)
    if task is None:
        raise click.ClickException(f"there is no task {task_id}")
    return task


@tasks_cli.command("show")
@click.argument("task_id")
@with_appcontext
def show_task(task_id: str) -> None:
    """Show everything about one task, the failure detail for operators included."""
    task = task_or_fail(task_id)
    user = db.session.get(User, task.user_id)
    now = utcnow()
    fields = {
        "id": task.id,
        "user": f"{user.username} (id {user.id})",
        "type": task.name,
        "description": task.description,
        "status": str(task.status),
        "progress": f"{task.progress}% ({task.done} of {task.total if task.total else '?'})",
        "attempts": task.attempts,
        "created": f"{task.created_at:%Y-%m-%d %H:%M:%S} UTC ({age(task.created_at, now)} ago)",
        "started": task.started_at and f"{task.started_at:%Y-%m-%d %H:%M:%S} UTC",
        "finished": task.finished_at and f"{task.finished_at:%Y-%m-%d %H:%M:%S} UTC",
        "updated": f"{task.updated_at:%Y-%m-%d %H:%M:%S} UTC ({age(task.updated_at, now)} ago)",
        "error (shown to the user)": task.error,
    }
    for name, value in fields.items():
        click.echo(f"{name + ':':<27}{'-' if value is None else value}")
    if task.failure_detail:
        click.echo("failure detail (operators only):")
        click.echo(task.failure_detail.rstrip())


@tasks_cli.command("cancel")
@click.argument("task_id")
@with_appcontext
def cancel_task(task_id: str) -> None:
    """Cancel a queued or running task; its user sees it cancelled at once."""
    task = task_or_fail(task_id)
    try:
        control.cancel(task)
    except control.TooLateToCancel:
        raise click.ClickException(
            f"task {task_id} is delivering its result; too late to cancel"
        ) from None
    except control.NotCancellable:
        raise click.ClickException(f"task {task_id} has already ended ({task.status})") from None
    click.echo(f"cancelled {task_id}")


@tasks_cli.command("retry")
@click.argument("task_id")
@with_appcontext
def retry_task(task_id: str) -> None:
    """Start a failed or cancelled task's job again for its user, as a new task."""
    task = task_or_fail(task_id)
    try:
        new = control.retry(task)
    except control.NotRetryable:
        raise click.ClickException(f"task {task_id} is {task.status}: not retryable") from None
    except TaskAlreadyActive:
        raise click.ClickException("that user already has an active task of this type") from None
    except QueueUnavailable:
        raise click.ClickException("the job queue is unreachable; the new task failed") from None
    click.echo(f"started {new.id} (retry of {task_id})")


@tasks_cli.command("reap")
@with_appcontext
def reap_tasks() -> None:
    """Run one reaper pass now: fail lost tasks, then the chores (expired archives…)."""
    run_pass(current_app.extensions["dramatiq"])
    click.echo("reaper pass done")


@click.group("jobs")
def jobs_cli() -> None:
    """See the job queues and the workers."""


@jobs_cli.command("status")
@with_appcontext
def jobs_status() -> None:
    """Show each queue and the live workers; exit 1 when no worker is alive."""
    broker = current_app.extensions["dramatiq"]
    try:
        queues = queue_stats(broker)
        workers = live_workers(broker)
    except redis.RedisError as error:
        raise click.ClickException(f"Redis did not answer: {error}") from None
    click.echo("QUEUE      READY  DELAYED  DEAD  OLDEST READY")
    for queue in queues:
        oldest = "-" if queue.oldest_age is None else f"{queue.oldest_age:.0f}s"
        click.echo(
            f"{queue.name:<10} {queue.ready:>5}  {queue.delayed:>7}  {queue.dead:>4}  {oldest}"
        )
    now_ms = time.time() * 1000
    click.echo(f"live workers: {len(workers)}")
    for worker in workers:
        click.echo(f"  {worker.name}  last beat {max(0, now_ms - worker.beat_ms) / 1000:.1f}s ago"
                   f"  runs: {', '.join(worker.job_types) or '-'}")  # fmt: skip
    if workers and (unknown := unknown_job_types(workers)):
        click.echo(f"no live worker runs (their tasks fail at once): {', '.join(unknown)}")
    if not workers:
        click.echo("no worker is alive", err=True)
        sys.exit(1)


@jobs_cli.command("replay")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--user", "username", required=True, help="Whose page receives the events.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="2 plays twice as fast as recorded.")  # fmt: skip
@with_appcontext
def replay_recording(path: str, username: str, speed: float) -> None:
    """Play a recorded job's events on a user's page, with their pacing, without running it.

    For working on the page: PATH is a recording, e.g. a golden file (tests/jobs/golden/*.json).
    The events belong to a task that does not exist, so a reload drops its card.
    """
    if current_app.config["MICROBLOG_ENV"] == "production":
        raise click.ClickException("refusing to replay in production: users would see a job "
                                   "that never ran")  # fmt: skip
    user = user_or_fail(username)
    try:
        recording = Recording.load(path)
    except (ValueError, KeyError, TypeError) as error:
        raise click.ClickException(f"{path} is not a recording: {error!r}") from None
    click.echo(f"replaying {len(recording.events)} events of {recording.job} to {user.username}")
    try:
        replay(recording, user.id, speed=speed)
    except redis.RedisError as error:
        raise click.ClickException(f"Redis did not answer: {error}") from None
    click.echo("done")
