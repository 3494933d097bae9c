"""Recordings of the events a job publishes: saved as JSON, compared, and played back.

A recording is what one task's user was sent, in order, with the time of each event after
the first. Tests compare a run with a golden recording (:func:`comparable` leaves out what
changes from run to run); ``flask jobs replay`` plays one on a user's channel so that the page
can be worked on without running the job.
"""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microblog.jobs import events
from microblog.live import channel

PLACEHOLDER_TASK = "<task id>"
PLACEHOLDER_TIME = "<time>"


@dataclass
class Recording:
    """The events of one task: ``{"type", "data", "after_ms"}`` each, oldest first."""

    job: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        document = json.loads(Path(path).read_text())
        return cls(document["job"], document["events"])

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"job": self.job, "events": self.events}
        path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def comparable(recording: Recording) -> list[dict[str, Any]]:
    """Return the events as two runs of the same job should agree on them.

    Ids and times become placeholders. How many progress updates a run sends depends on its
    speed (at most ten a second), so of each run of running-progress events only the first
    and the last are kept.
    """
    kept = []
    for index, event in enumerate(recording.events):
        if _is_running_progress(event):
            before = index > 0 and _is_running_progress(recording.events[index - 1])
            after = index + 1 < len(recording.events) and _is_running_progress(
                recording.events[index + 1]
            )
            if before and after:
                continue
        kept.append({"type": event["type"], "data": _placeholders(event["data"])})
    return kept


def _is_running_progress(event: dict[str, Any]) -> bool:
    return event["type"] == events.PROGRESS and event["data"].get("status") == "running"


def _placeholders(data: dict[str, Any]) -> dict[str, Any]:
    task_id = data.get("task_id")
    data = dict(data, task_id=PLACEHOLDER_TASK)
    if data.get("finished_at"):
        data["finished_at"] = PLACEHOLDER_TIME
    if isinstance(data.get("url"), str) and task_id:
        data["url"] = data["url"].replace(task_id, PLACEHOLDER_TASK)
    return data


def replay(
    recording: Recording,
    user_id: int,
    speed: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Publish the recording on ``user_id``'s channel as a new task; return the event ids.

    With ``speed`` the original pacing is kept (2 plays it twice as fast); without, every
    event goes out at once. Needs an app context.
    """
    task_id = uuid.uuid4().hex  # a task of its own, so its card is new on the page
    ids, previous_ms = [], 0
    for event in recording.events:
        if speed:
            sleep(max(0, event["after_ms"] - previous_ms) / 1000 / speed)
        previous_ms = event["after_ms"]
        data = _with_task_id(event["data"], task_id)
        ids.append(channel.publish(user_id, event["type"], data))
    return ids


def _with_task_id(data: dict[str, Any], task_id: str) -> dict[str, Any]:
    old = data.get("task_id")
    data = dict(data, task_id=task_id)
    if isinstance(data.get("url"), str) and old:
        data["url"] = data["url"].replace(old, task_id)
    return data
