"""Helpers shared by every model module."""

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta | None:
    """Return the span ``text`` writes like ``90s``, ``30m``, ``12h`` or ``7d``, else None."""
    match = re.fullmatch(r"(\d{1,6})([smhd])", text.strip())
    if not match:
        return None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def age(moment: datetime | None, now: datetime) -> str:
    """Say how long ago ``moment`` was, in the largest whole unit: 42s, 5m, 3h, 2d."""
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
