"""Helpers shared by every model module."""

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
LONGEST_DURATION = timedelta(days=100 * 365)  # "older than" this reaches back before 1926
DURATION_HINT = "a duration like 90s, 30m, 12h or 7d (at most 100 years)"


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta | None:
    """Return the span ``text`` writes like ``90s``, ``30m``, ``12h`` or ``7d``, else None;
    None too past ``LONGEST_DURATION``, so that now minus it is always a date."""
    match = re.fullmatch(r"([0-9]{1,6})([smhd])", text.strip())
    if not match:
        return None
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return duration if duration <= LONGEST_DURATION else None


def age(moment: datetime | None, now: datetime) -> str:
    """Say how long ago ``moment`` was, in the largest whole unit: 42s, 5m, 3h, 2d."""
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
