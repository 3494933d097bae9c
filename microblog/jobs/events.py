"""The task events: the one contract between the jobs and every page that shows a task.

Every event about a task has one of the types below and a :class:`TaskEvent` as its data.
The same shape is rendered by the server (the task cards, ``GET /tasks/<id>``), kept up to
date by ``static/js/tasks.js``, copied to the admin page, recorded by
:mod:`microblog.jobs.recording` and kept in ``tests/jobs/golden/``. ``docs/events.md`` describes it
for readers of the browser's side.

A job type adds to it only through its declaration (see ``@job``): where a succeeded task's
result lives (``result_endpoint`` → ``url``), what the link to it says (``result_label``) and
a few words about it (``summary``). Events travel on the user's live channel
(:mod:`microblog.live.channel`); a Redis outage costs the live view, never the task.
"""

from typing import Any, TypedDict

from flask_babel import format_number, gettext

from microblog.i18n import language, translated
from microblog.jobs import registry
from microblog.jobs.models import Task, TaskStatus
from microblog.live import channel
from microblog.urls import site_path

PROGRESS = "task.progress"  # queued, running (with its progress), or waiting out an outage
FINISHED = "task.finished"  # reached succeeded, failed or cancelled; sent once per task
DISMISSED = "task.dismissed"  # its user closed a finished task's card


class TaskEvent(TypedDict):
    """The data of every task event, and the card the pages render. A field that does not
    apply is null, never missing."""

    task_id: str
    name: str  # the job type
    description: str  # what the user sees, e.g. "Exporting your posts" (see localized)
    status: str  # a TaskStatus
    attempt: int  # attempts started so far (0 while first queued)
    progress: int  # 0-100
    done: int
    total: int | None  # null until the job knows how much there is to do
    counts: str | None  # with a total: how far in words, e.g. "51,000 of 300,404 posts"
    error: str | None  # failed: why; active: the outage it waits out; cancelled: by whom
    url: str | None  # succeeded: the result's path on this site, if the type keeps one
    result_label: str | None  # the text of the link to ``url``, e.g. "Download your archive"
    result: Any  # succeeded: what the job returned (a little JSON), e.g. {"posts": 12, …}
    summary: str | None  # succeeded: the result in a few words, e.g. "12 posts · 1.2 KB"
    finished_at: str | None  # ISO 8601, UTC
    retry_at: str | None  # waiting out an outage: when the next attempt starts (ISO 8601)
    max_attempts: int | None  # attempts an outage may take in all; null for an unknown type


def task_event(task: Task, **changes: Any) -> TaskEvent:
    """Return the event data of ``task`` as its row says, with ``changes`` (fields of
    :class:`TaskEvent`) applied: what a writer knows that the loaded row does not yet."""
    job_type = registry.find(task.name)
    succeeded = task.status == TaskStatus.SUCCEEDED and job_type is not None
    endpoint = job_type.result_endpoint if succeeded else None
    event = TaskEvent(
        task_id=task.id,
        name=task.name,
        description=task.description,
        status=str(task.status),
        attempt=task.attempts,
        progress=task.progress,
        done=task.done,
        total=task.total,
        counts=None,  # below: from the done and total the changes may bring
        error=task.error,
        url=site_path(endpoint, task_id=task.id) if endpoint else None,
        result_label=job_type.result_label if endpoint else None,
        result=task.result if succeeded else None,
        summary=english_summary(job_type, task.result) if succeeded else None,
        finished_at=task.finished_at.isoformat() if task.finished_at else None,
        retry_at=task.retry_at.isoformat() if task.retry_at else None,
        max_attempts=job_type.max_attempts if job_type else None,
    )
    event = amend(event, **changes)
    return amend(event, counts=english_counts(job_type, event["done"], event["total"]))


def english_summary(job_type: registry.JobType, result: Any) -> str | None:
    """Return the summary of a result in English, the language of every text as published
    (each reader's copy is :func:`localized`)."""
    if job_type.summary is None or result is None:
        return None
    with language(None):
        return job_type.summary(result)


def english_counts(job_type: registry.JobType | None, done: int, total: int | None) -> str | None:
    """Return how far a task is in words, in English (as published; see :func:`localized`)."""
    with language(None):
        return counts_in_words(job_type, done, total)


def counts_in_words(job_type: registry.JobType | None, done: int, total: int | None) -> str | None:
    """Say how far a task is in the current language: its type's words, else "5 of 12"."""
    if total is None:
        return None
    if job_type is not None and job_type.counts is not None:
        return job_type.counts(done, total)
    return gettext("%(done)s of %(total)s", done=format_number(done), total=format_number(total))


def localized(event: TaskEvent) -> TaskEvent:
    """Return ``event`` for a reader of the current language: its texts, kept as message ids
    in the row and on the channel, translated, and the result's summary written.

    The stream applies it to every task event it sends (see ``declare_event_types``), the
    pages to every card they render: whatever language a task was started in, each reader
    sees it in their own. A field the event lacks (an old recording replayed) stays missing.
    """
    job_type = registry.find(event.get("name"))
    changes = {field: translated(event[field])
               for field in ("description", "error", "result_label") if field in event}  # fmt: skip
    succeeded = event.get("status") == TaskStatus.SUCCEEDED
    if succeeded and job_type and job_type.summary and event.get("result") is not None:
        changes["summary"] = job_type.summary(event["result"])
    if "counts" in event and "done" in event and "total" in event:
        changes["counts"] = counts_in_words(job_type, event["done"], event["total"])
    return amend(event, **changes)


TYPES = channel.declare_event_types(PROGRESS, FINISHED, DISMISSED, localize=localized)


def amend(event: TaskEvent, **changes: Any) -> TaskEvent:
    """Return ``event`` with ``changes``, which must be fields of :class:`TaskEvent`."""
    unknown = changes.keys() - TaskEvent.__annotations__.keys()
    if unknown:
        raise KeyError(f"not fields of a task event: {', '.join(sorted(unknown))}")
    return TaskEvent(**(event | changes))


# How long a task's end (finished, dismissed) is retried while Redis is away: no later event
# would bring the open pages up to date.
FINAL_EVENT_RETRY_SECONDS = 120


def announce(type: str, task: Task, **changes: Any) -> None:
    """Tell the task's user (every open tab) and the operators of ``task``, as ``type``."""
    send(task.user_id, type, task_event(task, **changes))


def send(user_id: int, type: str, event: TaskEvent) -> None:
    """Publish an event already built (e.g. kept from before the database went away). A
    progress event lost to an outage is replaced by the next; an end is retried."""
    if type not in TYPES:
        raise ValueError(f"not a task event type: {type!r}")
    keep_trying = 0 if type == PROGRESS else FINAL_EVENT_RETRY_SECONDS
    channel.announce(user_id, type, dict(event), keep_trying=keep_trying)
