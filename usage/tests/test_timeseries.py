"""Local buckets in any zone and their exact cover by stored UTC buckets (pure functions)."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usage.timeseries import (
    GRANULARITIES,
    StoredRange,
    UsageQueryError,
    ceil_local,
    cover_interval,
    cover_plan,
    floor_local,
    merge_ranges,
    parse_instant,
    plan_series,
    zone_get,
)

SEOUL = ZoneInfo("Asia/Seoul")
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
ADELAIDE = ZoneInfo("Australia/Adelaide")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def stored_length(stored: StoredRange) -> timedelta:
    return stored.end - stored.start


# --- Parsing ------------------------------------------------------------------------------------


def test_zone_get_accepts_iana_names() -> None:
    assert zone_get("Asia/Seoul") == SEOUL
    assert zone_get(" UTC ").key == "UTC"


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "Asia", "../etc/passwd", "/etc/passwd"])
def test_zone_get_refuses_unknown_names(name: str) -> None:
    with pytest.raises(UsageQueryError) as error:
        zone_get(name)
    assert error.value.param == "tz"


def test_parse_instant_reads_naive_values_in_the_zone() -> None:
    assert parse_instant("2025-03-01", zone=SEOUL, param="from") == utc(2025, 2, 28, 15)
    assert parse_instant("2025-03-01T09:30", zone=KOLKATA, param="from") == utc(2025, 3, 1, 4)
    assert parse_instant("2025-03-01 09:30", zone=UTC_ZONE, param="from") == utc(2025, 3, 1, 9, 30)


def test_parse_instant_keeps_an_explicit_offset() -> None:
    assert parse_instant("2025-03-01T00:00Z", zone=SEOUL, param="to") == utc(2025, 3, 1)
    assert parse_instant("2025-03-01T09:00+09:00", zone=NEW_YORK, param="to") == utc(2025, 3, 1)


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "2025-03-01T25:00", "1"])
def test_parse_instant_refuses_garbage(value: str) -> None:
    with pytest.raises(UsageQueryError) as error:
        parse_instant(value, zone=SEOUL, param="from")
    assert error.value.param == "from"
    assert value in error.value.message


@pytest.mark.parametrize("value", ["0001-01-01T00:00", "1969-12-31", "9999-12-31"])
def test_parse_instant_refuses_years_out_of_range(value: str) -> None:
    with pytest.raises(UsageQueryError) as error:
        parse_instant(value, zone=SEOUL, param="to")
    assert error.value.param == "to"


# --- Local buckets ------------------------------------------------------------------------------


def test_a_seoul_day_starts_at_15_utc() -> None:
    plan = plan_series(utc(2025, 3, 1, 3), utc(2025, 3, 2, 3), granularity="day", zone=SEOUL)
    assert plan.boundaries == (utc(2025, 2, 28, 15), utc(2025, 3, 1, 15), utc(2025, 3, 2, 15))
    # A Seoul day is read from 24 UTC hour buckets, merged into one range across both days.
    assert cover_plan(plan) == [StoredRange("hour", utc(2025, 2, 28, 15), utc(2025, 3, 2, 15))]


def test_a_kolkata_day_needs_minute_buckets_at_its_edges() -> None:
    plan = plan_series(utc(2025, 3, 1, 12), utc(2025, 3, 1, 13), granularity="day", zone=KOLKATA)
    assert plan.boundaries == (utc(2025, 2, 28, 18, 30), utc(2025, 3, 1, 18, 30))
    assert cover_plan(plan) == [
        StoredRange("minute", utc(2025, 2, 28, 18, 30), utc(2025, 2, 28, 19)),
        StoredRange("hour", utc(2025, 2, 28, 19), utc(2025, 3, 1, 18)),
        StoredRange("minute", utc(2025, 3, 1, 18), utc(2025, 3, 1, 18, 30)),
    ]


def test_kolkata_hours_start_at_half_past_utc() -> None:
    plan = plan_series(utc(2025, 3, 1, 0), utc(2025, 3, 1, 2), granularity="hour", zone=KOLKATA)
    assert plan.boundaries == (
        utc(2025, 2, 28, 23, 30),
        utc(2025, 3, 1, 0, 30),
        utc(2025, 3, 1, 1, 30),
        utc(2025, 3, 1, 2, 30),
    )


def test_new_york_days_last_23_and_25_hours_across_dst() -> None:
    spring = plan_series(
        datetime(2025, 3, 8, tzinfo=NEW_YORK),
        datetime(2025, 3, 10, tzinfo=NEW_YORK),
        granularity="day",
        zone=NEW_YORK,
    )
    assert spring.boundaries == (utc(2025, 3, 8, 5), utc(2025, 3, 9, 5), utc(2025, 3, 10, 4))
    assert spring.boundaries[2] - spring.boundaries[1] == timedelta(hours=23)

    autumn = plan_series(
        datetime(2025, 11, 2, tzinfo=NEW_YORK),
        datetime(2025, 11, 3, tzinfo=NEW_YORK),
        granularity="day",
        zone=NEW_YORK,
    )
    assert autumn.boundaries == (utc(2025, 11, 2, 4), utc(2025, 11, 3, 5))
    assert cover_plan(autumn) == [StoredRange("hour", utc(2025, 11, 2, 4), utc(2025, 11, 3, 5))]


def test_the_repeated_new_york_hour_is_its_own_bucket() -> None:
    plan = plan_series(utc(2025, 11, 2, 4), utc(2025, 11, 2, 8), granularity="hour", zone=NEW_YORK)
    local = [start.strftime("%H:%M%z") for start in plan.local_starts()]
    assert local == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500"]


def test_adelaide_months_and_weeks_start_at_local_midnight() -> None:
    plan = plan_series(
        datetime(2025, 3, 15, tzinfo=ADELAIDE),
        datetime(2025, 5, 15, tzinfo=ADELAIDE),
        granularity="month",
        zone=ADELAIDE,
    )
    # +10:30 in March (daylight time), +09:30 from April 6th.
    assert plan.boundaries == (
        utc(2025, 2, 28, 13, 30),
        utc(2025, 3, 31, 13, 30),
        utc(2025, 4, 30, 14, 30),
        utc(2025, 5, 31, 14, 30),
    )
    week = plan_series(utc(2025, 3, 5), utc(2025, 3, 6), granularity="week", zone=ADELAIDE)
    assert [start.strftime("%a %H:%M") for start in week.local_starts()] == ["Mon 00:00"]


def test_utc_weeks_and_months_read_week_and_month_buckets() -> None:
    zone = ZoneInfo("UTC")
    weeks = plan_series(utc(2025, 3, 3), utc(2025, 3, 17), granularity="week", zone=zone)
    assert cover_plan(weeks) == [StoredRange("week", utc(2025, 3, 3), utc(2025, 3, 17))]
    months = plan_series(utc(2025, 1, 1), utc(2025, 3, 1), granularity="month", zone=zone)
    assert cover_plan(months) == [StoredRange("month", utc(2025, 1, 1), utc(2025, 3, 1))]


def test_the_range_widens_to_whole_buckets() -> None:
    plan = plan_series(
        utc(2025, 3, 1, 10, 20, 5), utc(2025, 3, 1, 12, 0, 0, 1), granularity="hour", zone=SEOUL
    )
    assert plan.start == utc(2025, 3, 1, 10)
    assert plan.end == utc(2025, 3, 1, 13)
    assert plan.point_count == 3


def test_floor_and_ceil_keep_aligned_instants() -> None:
    moment = utc(2025, 3, 1, 15)
    assert floor_local(moment, "day", SEOUL) == moment
    assert ceil_local(moment, "day", SEOUL) == moment
    assert ceil_local(moment + timedelta(seconds=1), "day", SEOUL) == utc(2025, 3, 2, 15)


def test_a_midnight_skipped_by_dst_starts_the_day_at_the_jump() -> None:
    # Chile moved clocks from 00:00 to 01:00 on 2024-09-08.
    santiago = ZoneInfo("America/Santiago")
    plan = plan_series(utc(2024, 9, 7, 12), utc(2024, 9, 8, 12), granularity="day", zone=santiago)
    assert plan.boundaries[1] == utc(2024, 9, 8, 4)
    assert plan.local_starts()[1].strftime("%d %H:%M") == "08 01:00"


@pytest.mark.parametrize(
    ("start", "end", "param"),
    [
        (utc(2025, 3, 2), utc(2025, 3, 1), "to"),
        (utc(2025, 3, 1), utc(2025, 3, 1), "to"),
        (utc(2025, 1, 1), utc(2025, 3, 1), "granularity"),
    ],
)
def test_plan_refuses_inverted_empty_and_too_large_ranges(
    start: datetime, end: datetime, param: str
) -> None:
    with pytest.raises(UsageQueryError) as error:
        plan_series(start, end, granularity="minute", zone=SEOUL)
    assert error.value.param == param


def test_plan_refuses_unknown_granularity() -> None:
    with pytest.raises(UsageQueryError) as error:
        plan_series(utc(2025, 3, 1), utc(2025, 3, 2), granularity="fortnight", zone=SEOUL)
    assert error.value.param == "granularity"
    assert "minute, hour, day, week, month" in error.value.message


def test_the_point_limit_is_inclusive() -> None:
    plan = plan_series(
        utc(2025, 3, 1), utc(2025, 3, 1, 0, 10), granularity="minute", zone=SEOUL, max_points=10
    )
    assert plan.point_count == 10
    with pytest.raises(UsageQueryError):
        plan_series(
            utc(2025, 3, 1), utc(2025, 3, 1, 0, 11), granularity="minute", zone=SEOUL, max_points=10
        )


# --- Cover --------------------------------------------------------------------------------------


def test_cover_prefers_coarse_buckets() -> None:
    ranges = cover_interval(utc(2025, 2, 27, 23, 58), utc(2025, 4, 8, 1, 1))
    assert ranges == [
        StoredRange("minute", utc(2025, 2, 27, 23, 58), utc(2025, 2, 28)),
        StoredRange("day", utc(2025, 2, 28), utc(2025, 3, 1)),
        StoredRange("month", utc(2025, 3, 1), utc(2025, 4, 1)),
        StoredRange("day", utc(2025, 4, 1), utc(2025, 4, 7)),
        StoredRange("day", utc(2025, 4, 7), utc(2025, 4, 8)),
        StoredRange("hour", utc(2025, 4, 8), utc(2025, 4, 8, 1)),
        StoredRange("minute", utc(2025, 4, 8, 1), utc(2025, 4, 8, 1, 1)),
    ]
    assert merge_ranges(ranges)[3] == StoredRange("day", utc(2025, 4, 1), utc(2025, 4, 8))


def test_cover_refuses_unaligned_instants() -> None:
    with pytest.raises(ValueError, match="minute-aligned"):
        cover_interval(utc(2025, 3, 1, 0, 0, 30), utc(2025, 3, 2))


def _explode(stored: StoredRange) -> list[tuple[str, datetime, datetime]]:
    """Individual stored buckets of a range."""
    pieces: list[tuple[str, datetime, datetime]] = []
    moment = stored.start
    while moment < stored.end:
        if stored.bucket == "month":
            following = moment.replace(
                year=moment.year + moment.month // 12, month=moment.month % 12 + 1
            )
        else:
            following = (
                moment
                + {
                    "minute": timedelta(minutes=1),
                    "hour": timedelta(hours=1),
                    "day": timedelta(days=1),
                    "week": timedelta(days=7),
                }[stored.bucket]
            )
        pieces.append((stored.bucket, moment, following))
        moment = following
    return pieces


ZONES = st.sampled_from(
    [
        "UTC",
        "Asia/Seoul",
        "Asia/Kolkata",
        "America/New_York",
        "Australia/Adelaide",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/Santiago",
        "Europe/London",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    zone_name=ZONES,
    granularity=st.sampled_from(GRANULARITIES),
    # Hypothesis takes naive bounds; the value is made UTC in the test.
    start=st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31)),  # noqa: DTZ001
    span_minutes=st.integers(min_value=1, max_value=60 * 24 * 120),
)
def test_cover_tiles_every_point_exactly(
    zone_name: str, granularity: str, start: datetime, span_minutes: int
) -> None:
    zone = ZoneInfo(zone_name)
    start_at = start.replace(tzinfo=UTC)
    try:
        plan = plan_series(
            start_at,
            start_at + timedelta(minutes=span_minutes),
            granularity=granularity,
            zone=zone,
            max_points=300,
        )
    except UsageQueryError as error:
        assert error.param == "granularity"
        return
    # Boundaries increase and each is where the local bucket of its own start begins.
    for left, right in zip(plan.boundaries, plan.boundaries[1:], strict=False):
        assert left < right
        assert floor_local(left, granularity, zone) == left
        assert floor_local(right - timedelta(minutes=1), granularity, zone) == left
    # Stored buckets tile the plan without gaps or overlaps, none crossing a boundary, each
    # aligned to its own UTC size.
    pieces = [piece for stored in cover_plan(plan) for piece in _explode(stored)]
    assert pieces[0][1] == plan.start
    assert pieces[-1][2] == plan.end
    for (_, _, end), (_, start_next, _) in zip(pieces, pieces[1:], strict=False):
        assert end == start_next
    for bucket, piece_start, piece_end in pieces:
        # Both ends of the piece lie in the same point.
        last_minute = piece_end - timedelta(minutes=1)
        assert bisect_right(plan.boundaries, piece_start) == bisect_right(
            plan.boundaries, last_minute
        )
        assert floor_local(piece_start, bucket, ZoneInfo("UTC")) == piece_start
