"""``dramatiq tests.support.crash_worker``: the production worker, made to stop itself at one point.

``CRASH_AT`` names a point of an export; the worker process sends itself SIGSTOP there, the
first time it gets there, so a test can kill it at exactly that point, or let it go on later
(SIGCONT) as a worker frozen by its host would. Just before, it writes the point and the task
it stops in to ``CRASH_REPORT``. Nothing else differs from ``dramatiq tasks``.
"""

import functools
import os
import signal
import smtplib
from pathlib import Path

from dramatiq.middleware import CurrentMessage

from microblog.exports import email, jobs
from microblog.jobs import progress
from microblog.jobs.worker import runner
from tasks import app  # noqa: F401 - builds the app, which binds every job to the broker

POINTS = ("before-start", "mid-read", "mid-store", "during-data", "after-send")
_stopped = False


def stop_here() -> None:
    global _stopped
    if not _stopped:
        _stopped = True
        report(os.environ.get("CRASH_REPORT"))
        os.kill(os.getpid(), signal.SIGSTOP)


def report(path: str | None) -> None:
    """Write where the worker stops, and in which task's message, to ``path`` (whole, by a
    rename): a test checks that the kill it is about to make lands in its own task."""
    if path:
        message = CurrentMessage.get_current_message()
        Path(path + ".new").write_text(f"{point} {message.message_id if message else '-'}")
        os.replace(path + ".new", path)


def stopping_before(function, when=lambda *args, **kwargs: True):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if when(*args, **kwargs):
            stop_here()
        return function(*args, **kwargs)

    return wrapper


def stopping_after(function, when=lambda *args, **kwargs: True):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        if when(*args, **kwargs):
            stop_here()
        return result

    return wrapper


point = os.environ["CRASH_AT"]
assert point in POINTS, f"CRASH_AT must be one of {POINTS}"
if point == "before-start":  # the message is taken, the attempt not yet counted
    runner.start_attempt = stopping_before(runner.start_attempt)
elif point == "mid-read":  # some posts read and reported
    progress.ProgressReporter.advance = stopping_after(progress.ProgressReporter.advance)
elif point == "mid-store":  # archive and chunks inserted, not committed
    jobs.store_chunks = stopping_after(jobs.store_chunks)
elif point == "during-data":  # the relay has the whole message; its answer is not read yet
    smtplib.SMTP.send = stopping_after(
        smtplib.SMTP.send,
        when=lambda self, data: isinstance(data, bytes) and data.endswith(b"\r\n.\r\n"),
    )
elif point == "after-send":  # the relay accepted the message; "sent" is not recorded yet
    email.mark = stopping_before(email.mark, when=lambda *args, **values: "emailed_at" in values)
