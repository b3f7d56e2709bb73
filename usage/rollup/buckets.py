"""Bucket arithmetic of the usage aggregates, in UTC (pure functions): which bucket of each
size contains a moment, and where the next one starts. Weeks start on Monday."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from usage.models import Bucket

LEVELS: tuple[str, ...] = (Bucket.MINUTE, Bucket.HOUR, Bucket.DAY, Bucket.WEEK, Bucket.MONTH)


def bucket_floor(bucket: str, moment: datetime) -> datetime:
    """The UTC start of the ``bucket`` that contains ``moment`` (weeks start on Monday)."""
    moment = moment.astimezone(UTC)
    if bucket == Bucket.MINUTE:
        return moment.replace(second=0, microsecond=0)
    if bucket == Bucket.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == Bucket.DAY:
        return day
    if bucket == Bucket.WEEK:
        return day - timedelta(days=day.weekday())
    if bucket == Bucket.MONTH:
        return day.replace(day=1)
    raise ValueError(f"unknown bucket {bucket!r}")


def bucket_next(bucket: str, start: datetime) -> datetime:
    """The start of the bucket after the one starting at ``start``."""
    if bucket == Bucket.MINUTE:
        return start + timedelta(minutes=1)
    if bucket == Bucket.HOUR:
        return start + timedelta(hours=1)
    if bucket == Bucket.DAY:
        return start + timedelta(days=1)
    if bucket == Bucket.WEEK:
        return start + timedelta(days=7)
    if bucket == Bucket.MONTH:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    raise ValueError(f"unknown bucket {bucket!r}")
