"""The Task model: the durable state of one run of a background job."""

import enum
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Enum,
    ForeignKey,
    Index,
    String,
    Text,
    bindparam,
    select,
    tuple_,
)
from sqlalchemy.orm import Mapped, mapped_column

from microblog.auth.models import User
from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by its user or an operator; final like the other two


ACTIVE_STATUSES = (TaskStatus.QUEUED, TaskStatus.RUNNING)
FINAL_STATUSES = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
RETRYABLE_STATUSES = (TaskStatus.FAILED, TaskStatus.CANCELLED)
_ACTIVE_SQL = "status IN ('queued', 'running')"


def new_task_id() -> str:
    return uuid.uuid4().hex


class Task(db.Model):
    __table_args__ = (
        # At most one active task per user and job type, enforced by the database so that two
        # concurrent requests cannot both start one.
        Index(
            "uq_task_active_per_user",
            "user_id",
            "name",
            unique=True,
            sqlite_where=db.text(_ACTIVE_SQL),
            postgresql_where=db.text(_ACTIVE_SQL),
        ),
        Index("ix_task_user_id_created_at", "user_id", "created_at"),
        # Operators' list, newest first: all tasks, and those in one status.
        Index("ix_task_created_at", "created_at"),
        Index("ix_task_status_created_at", "status", "created_at", "id"),
        Index("ix_task_status_updated_at", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_task_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # A message id (the English source), translated when shown; so are ``error`` and the
    # result's label and summary (see microblog.i18n).
    description: Mapped[str] = mapped_column(String(200))
    # The language of the page that started it: what the job writes for its user (an email)
    # is in it, unless the user has chosen one. None for tasks made before it was recorded.
    locale: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[TaskStatus] = mapped_column(
        Enum(
            TaskStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=TaskStatus.QUEUED,
    )
    progress: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)  # for the user: a message id
    # For operators only, never shown to the user: the exception type and traceback.
    failure_detail: Mapped[str | None] = mapped_column(Text)
    # What a succeeded job returned: a little JSON, e.g. a count (not an archive).
    result: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # When its user closed the finished task's card or opened its result: not shown again.
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the job began delivering what cannot be taken back (the export's email); from then
    # on a cancel is refused, so "cancelled" and "delivered" never both hold.
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # While a dependency is away: when the next attempt starts (``error`` says what it waits
    # for); cleared when it does.
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name} {self.status}>"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


def percentage(done: int, total: int | None) -> int:
    """Return done/total as a whole percentage, 0–100; an empty job is complete."""
    if not total:
        return 0 if total is None else 100
    return max(0, min(100, done * 100 // total))


# How many of a user's newest tasks the cards are chosen from.
CARDS_LOOKED_AT = 20

# Every page runs this: built once, it costs a lookup in the statement cache, not a build.
_TASKS_TO_SHOW = (
    select(Task)
    .where(Task.user_id == bindparam("user_id"))
    .order_by(Task.created_at.desc())
    .limit(CARDS_LOOKED_AT)
)


def tasks_to_show(user_id: int, with_results: Collection[str], finished: bool) -> list[Task]:
    """Return the tasks whose cards the user's page shows, newest first: the active ones and,
    if ``finished``, the finished ones not yet seen among the user's ``CARDS_LOOKED_AT``
    newest tasks.

    A finished task is seen once its user closed its card or opened its result
    (``dismissed_at``). Of each job type only the newest finished task is shown, except a
    succeeded one of a type in ``with_results`` (names of job types whose result is a link):
    a result the user has not opened is never hidden by a later task.
    """
    shown, finished_types = [], set()
    for task in db.session.scalars(_TASKS_TO_SHOW, {"user_id": user_id}):
        if task.is_active:
            shown.append(task)
            continue
        newest_of_type = task.name not in finished_types
        finished_types.add(task.name)
        unopened = task.status == TaskStatus.SUCCEEDED and task.name in with_results
        if finished and task.dismissed_at is None and (newest_of_type or unopened):
            shown.append(task)
    return shown


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks an operator asks for; an empty field does not filter."""

    statuses: tuple[str, ...] = ()
    user_id: int | None = None
    name: str | None = None
    created_before: datetime | None = None


def find_tasks(
    where: TaskFilter, limit: int, before: tuple[datetime, str] | None = None
) -> list[tuple[Task, str]]:
    """Return up to ``limit`` tasks matching ``where``, newest first, each with its user's
    name; past ``before`` (the created_at and id of the previous page's last task) if given.

    Reads an index newest first and stops at ``limit``: ``ix_task_created_at``, or for one
    status ``ix_task_status_created_at``, or for one user ``ix_task_user_id_created_at``. So
    a page costs the same at a million rows as at a thousand; only a job type that few tasks
    have, or several statuses at once, read further.
    """
    query = select(Task, User.username).join(User, User.id == Task.user_id)
    if where.statuses:
        query = query.where(Task.status.in_(where.statuses))
    if where.user_id is not None:
        query = query.where(Task.user_id == where.user_id)
    if where.name:
        query = query.where(Task.name == where.name)
    if where.created_before:
        query = query.where(Task.created_at < where.created_before)
    if before:
        created_at, task_id = before
        cursor = tuple_(
            bindparam("before_created_at", created_at, type_=Task.created_at.type),
            bindparam("before_id", task_id, type_=Task.id.type),
        )
        query = query.where(tuple_(Task.created_at, Task.id) < cursor)
    query = query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    return [(task, username) for task, username in db.session.execute(query)]


class KeptMessage(db.Model):
    """A message for a worker that could not be sent while the broker was away, kept until
    a worker's next pass sends it (see :func:`microblog.jobs.launch.send_or_keep`)."""

    __tablename__ = "kept_message"

    # The Dramatiq message's own id: sent twice, the errand still knows it as one message.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    actor_name: Mapped[str] = mapped_column(String(128))
    args: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
