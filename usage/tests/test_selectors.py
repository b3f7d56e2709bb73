"""Usage report reads: totals, series in several time zones, top users and keys, filters.

Aggregates are written here from synthetic events by a tiny rollup of the tests' own (every
stored bucket size, like the real rollup), so each report can be checked against a plain sum of
the events that fall into each local bucket.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from accounts.models import AccessKey, User
from usage.models import UsageAggregate
from usage.selectors import (
    UsageSums,
    usage_by_model,
    usage_query_build,
    usage_report,
    usage_top_keys,
    usage_top_users,
)
from usage.timeseries import UsageQueryError, floor_local

pytestmark = pytest.mark.django_db

UTC_ZONE = ZoneInfo("UTC")


@dataclass
class Event:
    at: datetime
    user_id: int = 1
    access_key_id: int = 1
    provider: str = "anthropic"
    model: str = "claude-sonnet-4-5"
    input_tokens: int = 100
    output_tokens: int = 10
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal("0.01")
    error: bool = False
    fallback: bool = False


def stored_starts(moment: datetime) -> dict[str, datetime]:
    """UTC starts of the stored buckets of every size containing ``moment``."""
    return {
        bucket: floor_local(moment, bucket, UTC_ZONE)
        for bucket in ("minute", "hour", "day", "week", "month")
    }


def aggregates_create(events: list[Event]) -> None:
    """Roll ``events`` up into UsageAggregate rows of every bucket size."""
    sums: dict[tuple[object, ...], dict[str, object]] = defaultdict(
        lambda: defaultdict(int, cost_usd=Decimal(0))
    )
    for event in events:
        for bucket, start in stored_starts(event.at).items():
            key = (bucket, start, event.user_id, event.access_key_id, event.provider, event.model)
            row = sums[key]
            row["requests"] += 1  # type: ignore[operator]
            row["errors"] += int(event.error)  # type: ignore[operator]
            row["fallbacks"] += int(event.fallback)  # type: ignore[operator]
            for name in ("input_tokens", "output_tokens", "cache_read_tokens"):
                row[name] += getattr(event, name)  # type: ignore[operator]
            row["cache_write_tokens"] += event.cache_write_tokens  # type: ignore[operator]
            row["cost_usd"] += event.cost_usd  # type: ignore[operator]
    UsageAggregate.objects.bulk_create(
        UsageAggregate(
            bucket=bucket,
            bucket_start=start,
            user_id=user_id,
            access_key_id=key_id,
            provider=provider,
            model=model,
            **values,
        )
        for (bucket, start, user_id, key_id, provider, model), values in sums.items()
    )


def event_sums(events: list[Event]) -> UsageSums:
    total = UsageSums()
    for event in events:
        total.add(
            UsageSums(
                requests=1,
                errors=int(event.error),
                fallbacks=int(event.fallback),
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cache_read_tokens=event.cache_read_tokens,
                cache_write_tokens=event.cache_write_tokens,
                cost_usd=event.cost_usd,
            )
        )
    return total


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def user_create(email: str) -> User:
    return User.objects.create_user(email=email)


def key_create(user: User, prefix: str, label: str = "") -> AccessKey:
    return AccessKey.objects.create(user=user, prefix=prefix, key_hash="0" * 64, label=label)


# --- Totals and series --------------------------------------------------------------------------


def test_report_sums_every_counter_and_splits_by_provider() -> None:
    events = [
        Event(utc(2025, 3, 1, 10, 5), input_tokens=1000, output_tokens=50, cost_usd=Decimal("0.5")),
        Event(
            utc(2025, 3, 1, 10, 6),
            provider="bedrock",
            cache_read_tokens=700,
            cache_write_tokens=30,
            fallback=True,
            cost_usd=Decimal("0.25"),
        ),
        Event(utc(2025, 3, 1, 11, 59), error=True, cost_usd=Decimal("0")),
        Event(utc(2025, 3, 1, 12, 0)),  # outside the range
    ]
    aggregates_create(events)
    query = usage_query_build(start=utc(2025, 3, 1, 10), end=utc(2025, 3, 1, 12))
    report = usage_report(query)

    assert report.totals == event_sums(events[:3])
    assert report.totals.total_tokens == 1000 + 50 + 100 + 10 + 700 + 30 + 100 + 10
    assert report.totals.fallback_rate == pytest.approx(1 / 3)
    assert report.totals.error_rate == pytest.approx(1 / 3)
    assert report.providers == ["anthropic", "bedrock"]
    assert report.by_provider["bedrock"] == event_sums(events[1:2])
    assert report.share("bedrock") == pytest.approx(1 / 3)
    assert report.share("anthropic", "cost") == pytest.approx(2 / 3)
    assert report.share("openai") == 0.0
    assert [point.totals.requests for point in report.points] == [2, 1]
    assert report.points[0].by_provider["bedrock"].fallbacks == 1
    assert report.points[0].start == datetime(2025, 3, 1, 10, tzinfo=UTC_ZONE)


def test_an_empty_report_has_zero_points_and_rates() -> None:
    report = usage_report(usage_query_build(start=utc(2025, 3, 1), end=utc(2025, 3, 2)))
    assert report.totals == UsageSums()
    assert report.totals.fallback_rate == 0.0
    assert len(report.points) == 24
    assert report.share("anthropic") == 0.0


def test_a_seoul_day_reads_hour_buckets_from_15_utc() -> None:
    events = [
        Event(utc(2025, 3, 1, 14, 59)),  # Seoul 23:59 on March 1st
        Event(utc(2025, 3, 1, 15, 0)),  # Seoul midnight, March 2nd
        Event(utc(2025, 3, 2, 14, 59)),  # Seoul 23:59 on March 2nd
    ]
    aggregates_create(events)
    query = usage_query_build(
        start="2025-03-01", end="2025-03-03", granularity="day", tz="Asia/Seoul"
    )
    report = usage_report(query)
    assert [point.start.isoformat() for point in report.points] == [
        "2025-03-01T00:00:00+09:00",
        "2025-03-02T00:00:00+09:00",
    ]
    assert [point.totals.requests for point in report.points] == [1, 2]
    # The same data by UTC day falls differently.
    utc_report = usage_report(
        usage_query_build(start="2025-03-01", end="2025-03-03", granularity="day")
    )
    assert [point.totals.requests for point in utc_report.points] == [2, 1]


def test_a_kolkata_day_counts_half_hours_from_minute_buckets() -> None:
    events = [
        Event(utc(2025, 3, 1, 18, 29)),  # Kolkata 23:59, March 1st
        Event(utc(2025, 3, 1, 18, 30)),  # Kolkata 00:00, March 2nd
        Event(utc(2025, 3, 1, 18, 45)),
        Event(utc(2025, 3, 2, 18, 29)),  # Kolkata 23:59, March 2nd
        Event(utc(2025, 3, 2, 18, 30)),  # March 3rd
    ]
    aggregates_create(events)
    query = usage_query_build(
        start="2025-03-01", end="2025-03-03", granularity="day", tz="Asia/Kolkata"
    )
    assert [point.totals.requests for point in usage_report(query).points] == [1, 3]
    buckets = {stored.bucket for stored in query.ranges}
    assert buckets == {"minute", "hour"}


def test_new_york_days_across_dst_have_23_and_25_hours_of_usage() -> None:
    # One request at the top of every UTC hour from March 8th to 11th, 2025.
    start = utc(2025, 3, 8)
    aggregates_create([Event(start + timedelta(hours=hour)) for hour in range(24 * 4)])
    query = usage_query_build(
        start="2025-03-08", end="2025-03-11", granularity="day", tz="America/New_York"
    )
    report = usage_report(query)
    assert [point.totals.requests for point in report.points] == [24, 23, 24]
    autumn_start = utc(2025, 11, 1)
    aggregates_create([Event(autumn_start + timedelta(hours=hour)) for hour in range(24 * 4)])
    autumn = usage_report(
        usage_query_build(
            start="2025-11-01", end="2025-11-04", granularity="day", tz="America/New_York"
        )
    )
    assert [point.totals.requests for point in autumn.points] == [24, 25, 24]


def test_utc_months_read_month_buckets_only() -> None:
    aggregates_create([Event(utc(2025, 1, 31, 23, 59)), Event(utc(2025, 2, 1))])
    query = usage_query_build(start="2025-01-01", end="2025-03-01", granularity="month")
    assert {stored.bucket for stored in query.ranges} == {"month"}
    assert [point.totals.requests for point in usage_report(query).points] == [1, 1]


def test_rankings_read_the_coarsest_buckets_of_the_whole_range() -> None:
    events = [Event(utc(2025, 1, 1) + timedelta(days=day, hours=day % 24)) for day in range(365)]
    aggregates_create(events)
    query = usage_query_build(start="2025-01-01", end="2026-01-01", granularity="day")
    assert {stored.bucket for stored in query.ranges} == {"day"}
    assert {stored.bucket for stored in query.whole_ranges} == {"month"}
    top = usage_top_users(query)
    assert top[0].sums == event_sums(events) == usage_report(query).totals
    assert sum(usage.sums.requests for usage in usage_by_model(query)) == 365


def test_report_reads_the_aggregates_once() -> None:
    aggregates_create([Event(utc(2025, 3, 1, hour)) for hour in range(24)])
    query = usage_query_build(start="2025-03-01", end="2025-03-02", granularity="day")
    with CaptureQueriesContext(connection) as captured:
        report = usage_report(query)
    assert report.totals.requests == 24
    reads = [
        entry["sql"]
        for entry in captured.captured_queries
        if "usage_usageaggregate" in entry["sql"]
    ]
    assert len(reads) == 1


# --- Filters ------------------------------------------------------------------------------------


def test_filters_restrict_every_dimension() -> None:
    at = utc(2025, 3, 1, 9)
    aggregates_create(
        [
            Event(at, user_id=1, access_key_id=11),
            Event(at, user_id=1, access_key_id=12, model="claude-haiku-4-5"),
            Event(at, user_id=2, access_key_id=21, provider="bedrock"),
            Event(at, user_id=0, access_key_id=0),
        ]
    )

    def requests(**filters: object) -> int:
        query = usage_query_build(start=at, end=at + timedelta(hours=1), **filters)  # type: ignore[arg-type]
        return usage_report(query).totals.requests

    assert requests() == 4
    assert requests(user_id=1) == 2
    assert requests(user_id=0) == 1
    assert requests(access_key_id=12) == 1
    assert requests(provider="bedrock") == 1
    assert requests(model="claude-haiku-4-5") == 1
    assert requests(user_id=1, model="claude-haiku-4-5") == 1
    assert requests(user_id=2, provider="anthropic") == 0


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tz": "Mars/Base"}, "tz"),
        ({"granularity": "decade"}, "granularity"),
        ({"start": "2025-03-02", "end": "2025-03-01"}, "to"),
        ({"start": "2024-01-01", "end": "2025-03-01", "granularity": "hour"}, "granularity"),
        ({"start": "soon"}, "from"),
        ({"end": "1900-01-01"}, "to"),
        ({"provider": "Acme Corp"}, "provider"),
        ({"provider": "generic"}, "provider"),
        ({"provider": "x" * 17}, "provider"),
        ({"model": "m" * 201}, "model"),
        ({"user_id": -1}, "user"),
        ({"access_key_id": -5}, "access_key"),
    ],
)
def test_bad_parameters_name_themselves(params: dict[str, object], param: str) -> None:
    with pytest.raises(UsageQueryError) as error:
        usage_query_build(**params)  # type: ignore[arg-type]
    assert error.value.param == param


def test_defaults_are_the_last_day_by_hour_in_utc() -> None:
    now = utc(2025, 3, 1, 12, 30)
    query = usage_query_build(now=now)
    assert query.tz_name == "UTC"
    assert query.plan.start == utc(2025, 2, 28, 12)
    assert query.plan.end == utc(2025, 3, 1, 13)
    assert query.plan.point_count == 25


def test_naive_datetimes_are_local_to_the_zone() -> None:
    query = usage_query_build(
        start=datetime(2025, 3, 1),  # noqa: DTZ001 - the case under test
        end=datetime(2025, 3, 2),  # noqa: DTZ001
        granularity="day",
        tz="Asia/Seoul",
    )
    assert query.plan.start == utc(2025, 2, 28, 15)


# --- Rankings -----------------------------------------------------------------------------------


def test_top_users_rank_by_cost_or_tokens_with_emails(django_assert_num_queries: object) -> None:
    alice = user_create("alice@example.com")
    bob = user_create("bob@example.com")
    at = utc(2025, 3, 1, 9)
    aggregates_create(
        [
            Event(at, user_id=alice.id, input_tokens=10, cost_usd=Decimal("5")),
            Event(at, user_id=bob.id, input_tokens=5000, cost_usd=Decimal("1")),
            Event(at, user_id=bob.id, input_tokens=5000, cost_usd=Decimal("1")),
            Event(at, user_id=999, input_tokens=1, cost_usd=Decimal("0.5")),  # deleted user
        ]
    )
    query = usage_query_build(start=at, end=at + timedelta(hours=1))
    with django_assert_num_queries(2):  # type: ignore[operator]
        by_cost = usage_top_users(query, rank_by="cost")
    assert [(user.email, user.sums.cost_usd) for user in by_cost] == [
        ("alice@example.com", Decimal("5")),
        ("bob@example.com", Decimal("2")),
        ("", Decimal("0.5")),
    ]
    by_tokens = usage_top_users(query, rank_by="tokens", limit=1)
    assert [(user.user_id, user.sums.requests) for user in by_tokens] == [(bob.id, 2)]


def test_email_lookups_take_one_query_for_many_users(
    django_assert_num_queries: object,
) -> None:
    users = [user_create(f"user{index}@example.com") for index in range(30)]
    keys = [key_create(user, f"gw_{index}") for index, user in enumerate(users)]
    at = utc(2025, 3, 1, 9)
    aggregates_create([Event(at, user_id=key.user_id, access_key_id=key.id) for key in keys])
    query = usage_query_build(start=at, end=at + timedelta(hours=1))
    with django_assert_num_queries(2):  # type: ignore[operator]
        top = usage_top_users(query, limit=100)
    assert {user.email for user in top} == {user.email for user in users}
    with django_assert_num_queries(3):  # type: ignore[operator]
        top_keys = usage_top_keys(query, limit=100)
    assert {(key.prefix, key.email) for key in top_keys} == {
        (key.prefix, key.user.email) for key in keys
    }


def test_unknown_ranking_is_refused() -> None:
    query = usage_query_build(start=utc(2025, 3, 1), end=utc(2025, 3, 2))
    with pytest.raises(UsageQueryError) as error:
        usage_top_users(query, rank_by="mood")
    assert error.value.param == "order_by"


def test_top_keys_of_a_user_carry_prefix_and_label() -> None:
    alice = user_create("alice@example.com")
    laptop = key_create(alice, "gw_laptop", "laptop")
    ci = key_create(alice, "gw_ci")
    at = utc(2025, 3, 1, 9)
    aggregates_create(
        [
            Event(at, user_id=alice.id, access_key_id=laptop.id, cost_usd=Decimal("1")),
            Event(at, user_id=alice.id, access_key_id=ci.id, cost_usd=Decimal("3")),
            Event(at, user_id=2, access_key_id=77, cost_usd=Decimal("9")),
        ]
    )
    query = usage_query_build(start=at, end=at + timedelta(hours=1), user_id=alice.id)
    keys = usage_top_keys(query)
    assert [(key.prefix, key.label, key.sums.cost_usd) for key in keys] == [
        ("gw_ci", "", Decimal("3")),
        ("gw_laptop", "laptop", Decimal("1")),
    ]
    everyone = usage_top_keys(usage_query_build(start=at, end=at + timedelta(hours=1)))
    assert everyone[0].access_key_id == 77
    assert everyone[0].prefix == ""


def test_by_model_orders_by_cost() -> None:
    at = utc(2025, 3, 1, 9)
    aggregates_create(
        [
            Event(at, model="claude-haiku-4-5", cost_usd=Decimal("0.1")),
            Event(at, model="claude-opus-4-6", cost_usd=Decimal("2")),
            Event(at, provider="bedrock", model="claude-opus-4-6", cost_usd=Decimal("1")),
        ]
    )
    models = usage_by_model(usage_query_build(start=at, end=at + timedelta(hours=1)))
    assert [(usage.provider, usage.model) for usage in models] == [
        ("anthropic", "claude-opus-4-6"),
        ("bedrock", "claude-opus-4-6"),
        ("anthropic", "claude-haiku-4-5"),
    ]


# --- Property: every zone and granularity equals a plain sum over events --------------------


ZONES = ["UTC", "Asia/Seoul", "Asia/Kolkata", "America/New_York", "Australia/Adelaide"]


class ReportMatchesEvents(HypothesisTestCase):
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        minutes=st.lists(st.integers(min_value=0, max_value=60 * 24 * 75), min_size=1, max_size=25),
        zone_name=st.sampled_from(ZONES),
        granularity=st.sampled_from(["hour", "day", "week", "month"]),
        users=st.lists(st.integers(min_value=1, max_value=3), min_size=25, max_size=25),
    )
    def test_series_equals_events_per_local_bucket(
        self, minutes: list[int], zone_name: str, granularity: str, users: list[int]
    ) -> None:
        # From 2025-02-20 over 75 days: crosses New York's and Adelaide's DST changes.
        origin = utc(2025, 2, 20)
        events = [
            Event(
                origin + timedelta(minutes=minute),
                user_id=user_id,
                provider="bedrock" if minute % 3 == 0 else "anthropic",
                input_tokens=minute % 997,
                cost_usd=Decimal(minute % 13) / 8,
                fallback=minute % 3 == 0,
            )
            for minute, user_id in zip(minutes, users, strict=False)
        ]
        UsageAggregate.objects.all().delete()
        aggregates_create(events)
        zone = ZoneInfo(zone_name)
        query = usage_query_build(
            start=origin,
            end=origin + timedelta(days=76),
            granularity=granularity,
            tz=zone_name,
            max_points=2000,
        )
        report = usage_report(query)
        expected: dict[datetime, list[Event]] = defaultdict(list)
        for event in events:
            expected[floor_local(event.at, granularity, zone)].append(event)
        for point in report.points:
            self.assertEqual(
                point.totals, event_sums(expected.pop(point.start.astimezone(UTC), []))
            )
        self.assertEqual(expected, {})
        self.assertEqual(report.totals, event_sums(events))
        top = usage_top_users(query, rank_by="tokens")
        self.assertEqual(sum(user.sums.total_tokens for user in top), report.totals.total_tokens)
