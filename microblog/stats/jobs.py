"""The word count: the smallest complete job type. Read it before writing one.

A job is a function of the task, its attempt and its progress reporter, declared with ``@job``
in a module that ``JOB_MODULES`` lists. It reads its data in chunks, tells the reporter as it
goes, and returns a little JSON, kept as the task's result; ``summary`` turns that into the
card's line. ``attempt`` is the fencing token for writes of its own (this job has none).
Retries, time limit, cancellation, the live card and the final event come from the runner.
"""

import re
from collections import Counter

from flask_babel import format_number, gettext, ngettext

from microblog.i18n import _l
from microblog.jobs.attempts import Attempt
from microblog.jobs.models import Task
from microblog.jobs.progress import ProgressReporter
from microblog.jobs.worker.runner import job
from microblog.posts.models import count_posts, post_rows, posts_done

WORD = re.compile(r"\w+(?:['’]\w+)*")  # letters and digits of any script; "don't" is one


def describe(result: dict) -> str:
    """Say what the count found, in the current language:
    "1,234 posts · 56,789 words · most used: hello"."""
    posts, words = result["posts"], result["words"]
    line = " · ".join((
        ngettext("%(count)s post", "%(count)s posts", posts, count=format_number(posts)),
        ngettext("%(count)s word", "%(count)s words", words, count=format_number(words)),
    ))  # fmt: skip
    if result["top"]:
        line += " · " + gettext("most used: %(word)s", word=result["top"][0][0])
    return line


@job(
    description=_l("Counting your words"),
    summary=describe,
    counts=posts_done,
    time_limit=5 * 60_000,
)
def count_words(task: Task, attempt: Attempt, progress: ProgressReporter) -> dict:
    """Count the words of the user's posts, and the ten most used."""
    progress.start(count_posts(task.user_id))
    words: Counter[str] = Counter()
    for rows in post_rows(task.user_id):
        for row in rows:
            words.update(word.casefold() for word in WORD.findall(row.body))
        progress.advance(len(rows))
    progress.finish()
    return {"posts": progress.done, "words": words.total(), "top": words.most_common(10)}
