"""Time arithmetic of budgets and rate limits. Pure: no Django, no I/O.

Budget periods are calendar days, weeks (from Monday) and months in a configured time zone
(``period_bounds``); rate limits count in fixed one-minute windows of epoch time
(``minute_window``), the same in every worker process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WINDOW_MS = 60_000
PERIODS = ("day", "week", "month")


def period_bounds(period: str, moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The ``[start, end)`` of the calendar ``period`` holding ``moment`` (aware), both aware
    in ``zone``. Days are calendar days: 23 or 25 hours long across a DST change."""
    if moment.tzinfo is None:
        raise ValueError("moment must be aware")
    local = moment.astimezone(zone)
    day = local.date()
    if period == "day":
        first = day
        following = first + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        following = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return start, end


def minute_window(now_ms: int) -> tuple[int, int]:
    """The fixed one-minute window holding ``now_ms``: ``(start_ms, end_ms)``."""
    start = now_ms - now_ms % WINDOW_MS
    return start, start + WINDOW_MS


def reset_duration(seconds: float) -> str:
    """A wait in the style of OpenAI's ``x-ratelimit-reset-*`` headers: ``1s``, ``6m0s``,
    ``20ms``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = int(seconds + 0.999)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
