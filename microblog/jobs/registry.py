"""Job types, chores and errands: one record each.

Job types and chores come from the modules ``JOB_MODULES`` names.

A job type is declared by :func:`microblog.jobs.worker.runner.job` in a job module, a chore
(work for every reaper pass, e.g. deleting expired files) by :func:`chore`. Which modules
make up the product is configuration (``JOB_MODULES``), read by ``create_app``, so the web
processes and ``dramatiq tasks`` load the same list, whatever else either happens to import.
The app's broker knows exactly the types of those modules; a job module imported for another
reason (a view) adds nothing to an app that does not list it: neither its job types nor its
chores.

An errand (see :func:`microblog.jobs.worker.runner.errand`) is work for a worker with no task
row and no card, such as an email to send for a request that has no user yet. Errands are the
product's plumbing, not a choice: every app binds every errand its process declared.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from flask import Flask, current_app


@dataclass(frozen=True)
class JobType:
    """What the machinery knows of one job type."""

    actor: dramatiq.Actor  # named after the job's function; takes a task id
    description: str  # message id of what the user sees on the card: "Exporting your posts"
    result_endpoint: str | None = None  # takes task_id: where a succeeded task's result is
    result_label: str = "See the result"  # message id of the text of the link to it
    # A succeeded task's result (what its body returned) in a few words, in the current language.
    summary: "Callable[[Any], str | None] | None" = None
    # How far a task is (done, total) in words, in the current language: "51,000 of 300,404 posts".
    counts: "Callable[[int, int], str] | None" = None

    @property
    def name(self) -> str:
        return self.actor.actor_name

    @property
    def module(self) -> str:
        return self.actor.fn.__module__

    @property
    def queue_name(self) -> str:
        return self.actor.queue_name

    @property
    def max_retries(self) -> int:
        return self.actor.options["max_retries"]

    @property
    def max_attempts(self) -> int:
        """How many attempts an outage may cost a task of this type."""
        return self.max_retries + 1


_types: dict[str, JobType] = {}  # every type declared in this process, by name
_chores: dict[str, list[Callable[[], object]]] = {}  # every chore declared, by module
_errands: dict[str, dramatiq.Actor] = {}  # every errand declared in this process, by name


class DuplicateJobType(Exception):
    """Two job modules declare a job type of the same name."""


def declare(job_type: JobType) -> None:
    existing = _types.get(job_type.name)
    if existing is not None and existing.module != job_type.module:
        raise DuplicateJobType(
            f"{job_type.name!r} is declared by both {existing.module} and {job_type.module}"
        )
    _types[job_type.name] = job_type


def declare_errand(actor: dramatiq.Actor) -> None:
    existing = _errands.get(actor.actor_name)
    if actor.actor_name in _types or (existing and existing.fn.__module__ != actor.fn.__module__):
        raise DuplicateJobType(f"{actor.actor_name!r} is declared twice")
    _errands[actor.actor_name] = actor


def errands() -> list[dramatiq.Actor]:
    """Return every errand declared in this process."""
    return list(_errands.values())


def actor_options(name: str) -> dict:
    """Return the Dramatiq options (retries, backoff) of a job type's or an errand's actor."""
    actor = _errands.get(name) or (_types[name].actor if name in _types else None)
    return actor.options if actor is not None else {}


def chore(function: Callable[[], object]) -> Callable[[], object]:
    """Run ``function`` on every reaper pass of the apps whose ``JOB_MODULES`` list its module."""
    _chores.setdefault(function.__module__, []).append(function)
    return function


def load(app: Flask) -> dict[str, JobType]:
    """Import the app's job modules; return their job types by name, and keep them and the
    modules' chores."""
    modules = app.config["JOB_MODULES"]
    for module in modules:
        importlib.import_module(module)
    mine = {name: t for name, t in sorted(_types.items()) if t.module in modules}
    app.extensions["microblog.job_types"] = mine
    app.extensions["microblog.chores"] = [f for m in modules for f in _chores.get(m, [])]
    return mine


def job_types() -> dict[str, JobType]:
    """Return the current app's job types by name."""
    return current_app.extensions["microblog.job_types"]


def chores() -> list[Callable[[], object]]:
    """Return the current app's chores, in the order of its ``JOB_MODULES``."""
    return current_app.extensions["microblog.chores"]


def find(name: str) -> JobType | None:
    """Return the job type of that name if this process declared it (any app), else None.

    For reading a task of any type, e.g. an old one: its description, queue, result.
    Starting one is for :func:`job_types` only.
    """
    return _types.get(name)
