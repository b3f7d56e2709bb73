"""Time-zone bucketing for usage reports: pure functions over datetimes (no Django, no I/O).

A report asks for buckets of a granularity (minute, hour, day, week from Monday, month) in an
IANA time zone. Their boundaries are local wall-clock instants, so in Asia/Seoul a day starts at
15:00 UTC, in Asia/Kolkata at 18:30 UTC and in America/New_York a day lasts 23 or 25 hours around
a daylight-saving change. Aggregates are stored in UTC buckets of the same five sizes; ``cover``
splits every local bucket into the coarsest stored buckets that fit it exactly, so a report sums
stored rows and never needs raw events.

What does not live here: reading the rows (usage.selectors) and presenting them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

GRANULARITIES: tuple[str, ...] = ("minute", "hour", "day", "week", "month")

# Most points a single report may have: enough for a day by minute or two months by hour, few
# enough that one request stays cheap and a chart stays readable.
MAX_POINTS = 1500

# Reports outside these years are refused: they cannot hold gateway traffic, and month arithmetic
# near datetime's limits would overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


class UsageQueryError(ValueError):
    """Bad report parameters; ``param`` names the offending query parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


# --- Parsing ------------------------------------------------------------------------------------


def zone_get(name: str, *, param: str = "tz") -> ZoneInfo:
    """The IANA zone called ``name`` (e.g. ``Asia/Seoul``), or UsageQueryError naming ``param``."""
    name = name.strip()
    if not name or not _ZONE_NAME.match(name):
        raise UsageQueryError(param, f"{name!r} is not an IANA time zone name such as Asia/Seoul.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageQueryError(param, f"unknown time zone {name!r}.") from None


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name known to this system, sorted (read once: it walks the disk)."""
    return tuple(sorted(available_timezones()))


def granularity_check(value: str, *, param: str = "granularity") -> str:
    if value not in GRANULARITIES:
        raise UsageQueryError(
            param, f"unknown granularity {value!r}; choose one of {', '.join(GRANULARITIES)}."
        )
    return value


def parse_instant(value: str, *, zone: ZoneInfo, param: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is wall-clock time in ``zone``."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageQueryError(
            param, f"{value!r} is not an ISO 8601 date or date-time (e.g. 2025-03-01T09:00)."
        ) from None
    moment = parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed
    return instant_check(moment, param=param)


def instant_check(moment: datetime, *, param: str) -> datetime:
    """``moment`` as UTC, refused when naive or outside the supported years."""
    if moment.tzinfo is None:
        raise UsageQueryError(param, "needs a time zone.")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = EARLIEST - _DAY
    if not EARLIEST <= utc < LATEST:
        raise UsageQueryError(
            param, f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)."
        )
    return utc


# --- Local buckets ------------------------------------------------------------------------------


def _localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time, floored to the minute.

    ``fold=0`` picks the first of two repeated wall times, and for a wall time skipped by a
    daylight-saving jump it yields the instant of the jump: both are where a local bucket starts.
    The minute floor only matters for historical offsets with seconds (local mean time).
    """
    utc = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return utc.replace(second=0, microsecond=0)


def floor_local(moment: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    """Start (UTC) of the local bucket of ``granularity`` in ``zone`` that contains ``moment``."""
    utc = moment.astimezone(UTC)
    if granularity == "minute":
        return utc.replace(second=0, microsecond=0)
    local = utc.astimezone(zone)
    if granularity == "hour":
        # Same fold as ``local``, so the second of two repeated hours keeps its own start.
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return start.replace(second=0, microsecond=0)
    day = local.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    elif granularity != "day":
        granularity_check(granularity)
    start = _localize(datetime.combine(day, time()), zone)
    # A day whose midnight was skipped starts at the jump, which lies after ``moment`` only if
    # ``moment`` precedes it; then the bucket is the previous one.
    return start if start <= utc else floor_local(utc - _MINUTE, granularity, zone)


def next_local(boundary: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    """Start (UTC) of the local bucket after the one starting at ``boundary``."""
    if granularity in ("minute", "hour"):
        step = _MINUTE if granularity == "minute" else _HOUR
        # Whole hours in UTC steps: a repeated or skipped wall hour is handled by the flooring.
        # A half-hour daylight-saving change (Australia/Lord_Howe) can make a local hour last
        # 90 minutes, so the second step.
        for multiple in (1, 2, 3):
            candidate = floor_local(boundary + step * multiple, granularity, zone)
            if candidate > boundary:
                return candidate
        raise AssertionError("no next local hour")  # pragma: no cover
    day = boundary.astimezone(zone).date()
    if granularity == "day":
        day += _DAY
    elif granularity == "week":
        day += _WEEK
    else:
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return _localize(datetime.combine(day, time()), zone)


def ceil_local(moment: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    start = floor_local(moment, granularity, zone)
    return start if start == moment.astimezone(UTC) else next_local(start, granularity, zone)


@dataclass(frozen=True)
class SeriesPlan:
    """The local buckets of one report: point ``i`` covers ``[boundaries[i], boundaries[i+1])``.

    Boundaries are UTC instants; ``start`` and ``end`` are the requested range widened to whole
    buckets, so totals always equal the sum of the points.
    """

    granularity: str
    zone: ZoneInfo
    boundaries: tuple[datetime, ...]

    @property
    def start(self) -> datetime:
        return self.boundaries[0]

    @property
    def end(self) -> datetime:
        return self.boundaries[-1]

    @property
    def point_count(self) -> int:
        return len(self.boundaries) - 1

    def local_starts(self) -> list[datetime]:
        return [moment.astimezone(self.zone) for moment in self.boundaries[:-1]]


def plan_series(
    start: datetime,
    end: datetime,
    *,
    granularity: str,
    zone: ZoneInfo,
    max_points: int = MAX_POINTS,
) -> SeriesPlan:
    """Local buckets covering ``[start, end)``; UsageQueryError for a bad or too large range."""
    granularity_check(granularity)
    start = instant_check(start, param="from")
    end = instant_check(end, param="to")
    if start >= end:
        raise UsageQueryError(
            "to", f"must be after from ({end.isoformat()} is not after {start.isoformat()})."
        )
    boundaries = [floor_local(start, granularity, zone)]
    last = ceil_local(end, granularity, zone)
    while boundaries[-1] < last:
        if len(boundaries) > max_points:
            raise UsageQueryError(
                "granularity",
                f"the range from {start.isoformat()} to {end.isoformat()} holds more than "
                f"{max_points} {granularity} buckets; choose a coarser granularity or a "
                "shorter range (from/to).",
            )
        boundaries.append(next_local(boundaries[-1], granularity, zone))
    return SeriesPlan(granularity=granularity, zone=zone, boundaries=tuple(boundaries))


# --- Covering local buckets with stored UTC buckets ---------------------------------------------


@dataclass(frozen=True)
class StoredRange:
    """Stored buckets of size ``bucket`` whose UTC starts lie in ``[start, end)``."""

    bucket: str
    start: datetime
    end: datetime


def _stored_end(bucket: str, start: datetime) -> datetime:
    if bucket == "minute":
        return start + _MINUTE
    if bucket == "hour":
        return start + _HOUR
    if bucket == "day":
        return start + _DAY
    if bucket == "week":
        return start + _WEEK
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def _stored_aligned(bucket: str, moment: datetime) -> bool:
    if moment.second or moment.microsecond:
        return False
    if bucket == "minute":
        return True
    if moment.minute:
        return False
    if bucket == "hour":
        return True
    if moment.hour:
        return False
    if bucket == "day":
        return True
    if bucket == "week":
        return moment.weekday() == 0
    return moment.day == 1


def _next_midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + _DAY


def _run_end(bucket: str, start: datetime, limit: datetime) -> datetime:
    """End of a run of ``bucket`` pieces from ``start``: stops where a coarser bucket could begin
    (so the greedy choice is made again there) or where the next piece would pass ``limit``."""
    if bucket in ("week", "month"):
        return _stored_end(bucket, start)
    size = {"minute": _MINUTE, "hour": _HOUR, "day": _DAY}[bucket]
    fitting = start + size * ((limit - start) // size)
    if bucket == "minute":
        coarser = start.replace(minute=0, second=0, microsecond=0) + _HOUR
    elif bucket == "hour":
        coarser = _next_midnight(start)
    else:
        next_monday = _next_midnight(start) + timedelta(days=(6 - start.weekday()) % 7)
        next_month = _stored_end("month", start.replace(day=1))
        coarser = min(next_monday, next_month)
    return min(fitting, coarser)


def cover_interval(start: datetime, end: datetime) -> list[StoredRange]:
    """Stored UTC buckets that tile ``[start, end)`` exactly, coarsest first where they fit.

    Both ends must be whole UTC minutes (every real time zone offset is).
    """
    if not (_stored_aligned("minute", start) and _stored_aligned("minute", end)):
        raise ValueError("cover needs minute-aligned UTC instants")
    ranges: list[StoredRange] = []
    moment = start
    while moment < end:
        for bucket in ("month", "week", "day", "hour", "minute"):
            if _stored_aligned(bucket, moment) and _stored_end(bucket, moment) <= end:
                run_end = _run_end(bucket, moment, end)
                ranges.append(StoredRange(bucket, moment, run_end))
                moment = run_end
                break
    return ranges


def merge_ranges(ranges: Sequence[StoredRange]) -> list[StoredRange]:
    """Adjacent ranges of the same bucket size joined, so a query needs fewer conditions."""
    merged: list[StoredRange] = []
    for stored in ranges:
        if merged and merged[-1].bucket == stored.bucket and merged[-1].end == stored.start:
            merged[-1] = StoredRange(stored.bucket, merged[-1].start, stored.end)
        else:
            merged.append(stored)
    return merged


def cover_plan(plan: SeriesPlan) -> list[StoredRange]:
    """Stored ranges that tile the whole plan without any piece crossing a point boundary."""
    pieces: list[StoredRange] = []
    for left, right in zip(plan.boundaries, plan.boundaries[1:], strict=False):
        pieces.extend(cover_interval(left, right))
    return merge_ranges(pieces)
