"""The rollup, rebuild and prune services on hand-picked cases.

Randomised properties are in test_rollup_properties.py, concurrency in test_rollup_concurrency.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from usage.locks import LockBusy, maintenance_lock
from usage.models import (
    Bucket,
    PendingUsageEvent,
    Price,
    UsageAggregate,
    UsageEvent,
    UsageRollupState,
)
from usage.rollup import (
    PRUNE_LOCK,
    ROLLUP_LOCK,
    RollupError,
    bucket_floor,
    bucket_next,
    prune_cutoff,
    usage_aggregates_rebuild,
    usage_events_prune,
    usage_rollup,
)
from usage.tests.factories import (
    DEFAULT_TIME,
    event_fields,
    expected_aggregates,
    make_event,
    make_events,
    make_price,
    stored_aggregates,
)

pytestmark = pytest.mark.django_db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def row(bucket: str, start: datetime, **dims: object) -> UsageAggregate:
    return UsageAggregate.objects.get(bucket=bucket, bucket_start=start, **dims)


def assert_exact() -> None:
    assert stored_aggregates() == expected_aggregates(UsageEvent.objects.all())


# --- bucket arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "moment", "start", "following"),
    [
        (
            Bucket.MINUTE,
            utc(2026, 3, 1, 23, 59, 59, 999999),
            utc(2026, 3, 1, 23, 59),
            utc(2026, 3, 2),
        ),
        (Bucket.HOUR, utc(2026, 3, 1, 23, 30), utc(2026, 3, 1, 23), utc(2026, 3, 2)),
        (Bucket.DAY, utc(2026, 2, 28, 12), utc(2026, 2, 28), utc(2026, 3, 1)),
        # 2026-03-01 is a Sunday: its week began on Monday 2026-02-23.
        (Bucket.WEEK, utc(2026, 3, 1, 23, 59), utc(2026, 2, 23), utc(2026, 3, 2)),
        (Bucket.WEEK, utc(2026, 3, 2), utc(2026, 3, 2), utc(2026, 3, 9)),
        (Bucket.WEEK, utc(2026, 1, 1), utc(2025, 12, 29), utc(2026, 1, 5)),
        (Bucket.MONTH, utc(2026, 2, 28, 23), utc(2026, 2, 1), utc(2026, 3, 1)),
        (Bucket.MONTH, utc(2025, 12, 31, 23), utc(2025, 12, 1), utc(2026, 1, 1)),
    ],
)
def test_bucket_floor_and_next(bucket, moment, start, following):
    assert bucket_floor(bucket, moment) == start
    assert bucket_next(bucket, start) == following


def test_bucket_floor_converts_to_utc_first():
    from zoneinfo import ZoneInfo

    seoul = datetime(2026, 3, 2, 8, 30, tzinfo=ZoneInfo("Asia/Seoul"))  # Sunday 23:30 UTC
    assert bucket_floor(Bucket.DAY, seoul) == utc(2026, 3, 1)
    assert bucket_floor(Bucket.WEEK, seoul) == utc(2026, 2, 23)


def test_unknown_bucket_is_refused():
    with pytest.raises(ValueError, match="unknown bucket"):
        bucket_floor("year", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown bucket"):
        bucket_next("year", utc(2026, 1, 1))


# --- rollup ---------------------------------------------------------------------------------


def test_events_land_in_every_bucket_size_with_their_dimensions():
    Price.objects.all().delete()
    for provider in ("anthropic", "bedrock"):
        make_price(provider=provider, input_per_mtok="3", output_per_mtok="15")
    sunday_night = utc(2026, 3, 1, 23, 59, 30)
    monday = utc(2026, 3, 2, 0, 0, 10)
    make_event(occurred_at=sunday_night, input_tokens=1000, output_tokens=100)
    make_event(occurred_at=sunday_night + timedelta(seconds=5), status_code=429)
    make_event(
        occurred_at=monday,
        provider="bedrock",
        fallback_reason="anthropic_rate_limited",
        input_tokens=10,
        output_tokens=0,
    )
    make_event(
        occurred_at=monday,
        user_id=None,
        access_key_id=None,
        requested_model="mystery",
        upstream_model="mystery",
    )

    report = usage_rollup()

    assert (report.events, report.batches, report.complete) == (4, 1, True)
    assert report.unpriced == {("anthropic", "mystery"): 1}
    minute = row(Bucket.MINUTE, utc(2026, 3, 1, 23, 59), provider="anthropic", user_id=1)
    assert (minute.requests, minute.errors, minute.fallbacks) == (2, 1, 0)
    assert (minute.input_tokens, minute.output_tokens) == (2000, 300)
    assert minute.cost_usd == Decimal("0.0045") + Decimal("0.006")
    assert row(Bucket.WEEK, utc(2026, 2, 23), provider="anthropic", user_id=1).requests == 2
    assert row(Bucket.MONTH, utc(2026, 3, 1), provider="anthropic", user_id=1).requests == 2
    bedrock = row(Bucket.WEEK, utc(2026, 3, 2), provider="bedrock")
    assert (bedrock.requests, bedrock.fallbacks, bedrock.model) == (1, 1, "claude-sonnet-4-5")
    anonymous = row(Bucket.DAY, utc(2026, 3, 2), user_id=0, access_key_id=0, model="mystery")
    assert (anonymous.requests, anonymous.cost_usd) == (1, 0)
    assert UsageAggregate.objects.filter(bucket=Bucket.MONTH).count() == 3
    assert not PendingUsageEvent.objects.exists()
    assert UsageRollupState.objects.get(pk=1).last_rollup_at is not None
    assert_exact()


def test_a_rerun_adds_nothing():
    make_events(event_fields(occurred_at=utc(2026, 3, 2, 10, m)) for m in range(5))
    usage_rollup()
    before = stored_aggregates()
    again = usage_rollup()
    assert (again.events, again.batches) == (0, 0)
    assert stored_aggregates() == before


def test_late_events_are_added_to_buckets_already_rolled_up():
    make_event(occurred_at=utc(2026, 3, 2, 10, 0, 5))
    usage_rollup()
    # Written hours after it occurred (a spool replay), into the same minute and an older one.
    make_event(occurred_at=utc(2026, 3, 2, 10, 0, 50), recorded_at=utc(2026, 3, 2, 15))
    make_event(occurred_at=utc(2026, 2, 27, 8), recorded_at=utc(2026, 3, 2, 15))
    assert usage_rollup().events == 2
    assert row(Bucket.MINUTE, utc(2026, 3, 2, 10, 0)).requests == 2
    assert row(Bucket.MONTH, utc(2026, 3, 1)).requests == 2
    assert row(Bucket.MONTH, utc(2026, 2, 1)).requests == 1
    assert row(Bucket.WEEK, utc(2026, 2, 23)).requests == 1
    assert_exact()


def test_a_replayed_duplicate_event_is_counted_once():
    fields = event_fields(occurred_at=utc(2026, 3, 2, 10))
    UsageEvent.objects.bulk_create([UsageEvent(**fields)], ignore_conflicts=True)
    usage_rollup()
    UsageEvent.objects.bulk_create([UsageEvent(**fields)], ignore_conflicts=True)
    assert PendingUsageEvent.objects.count() == 0
    assert usage_rollup().events == 0
    assert row(Bucket.DAY, utc(2026, 3, 2)).requests == 1


def test_the_recorded_cost_wins_over_the_price_table():
    make_event(occurred_at=utc(2026, 3, 2, 10), cost_usd=Decimal("1.23456789"))
    make_event(occurred_at=utc(2026, 3, 2, 10), requested_model="mystery", cost_usd=Decimal("2"))
    report = usage_rollup()
    assert report.unpriced == {}
    assert row(Bucket.HOUR, utc(2026, 3, 2, 10), model="claude-sonnet-4-5").cost_usd == Decimal(
        "1.23456789"
    )
    assert row(Bucket.HOUR, utc(2026, 3, 2, 10), model="mystery").cost_usd == 2
    assert_exact()


def test_a_price_change_inside_a_minute_prices_each_event_at_its_moment():
    Price.objects.all().delete()
    make_price(valid_from=utc(2026, 1, 1), input_per_mtok="3", output_per_mtok="0")
    make_price(valid_from=utc(2026, 3, 2, 10, 0, 30), input_per_mtok="4", output_per_mtok="0")
    make_event(occurred_at=utc(2026, 3, 2, 10, 0, 29, 999999), input_tokens=1_000_000)
    make_event(occurred_at=utc(2026, 3, 2, 10, 0, 30), input_tokens=1_000_000)
    usage_rollup()
    assert row(Bucket.MINUTE, utc(2026, 3, 2, 10, 0)).cost_usd == 7
    assert_exact()


def test_a_dated_model_name_is_priced_through_its_alias():
    Price.objects.all().delete()
    make_price(model="claude-sonnet-4-5", input_per_mtok="3", output_per_mtok="0")
    make_event(requested_model="claude-sonnet-4-5-20991231", input_tokens=1_000_000)
    make_event(requested_model="claude-sonnet-4-5-20991231", input_tokens=2_000_000)
    report = usage_rollup(batch_size=1)
    assert report.unpriced == {}
    assert row(Bucket.DAY, bucket_floor(Bucket.DAY, DEFAULT_TIME)).requests == 2
    assert_exact()


def test_batches_limits_and_budget_stop_early_and_the_next_run_goes_on():
    make_events(event_fields(occurred_at=utc(2026, 3, 2, 10, m)) for m in range(5))
    first = usage_rollup(batch_size=2, max_batches=1)
    assert (first.events, first.batches, first.complete) == (2, 1, False)
    second = usage_rollup(batch_size=2, time_budget=0)  # one batch always runs
    assert (second.events, second.complete) == (2, False)
    assert usage_rollup(batch_size=2).events == 1
    assert_exact()


def test_queued_events_deleted_by_hand_are_dropped_from_the_queue():
    kept = make_event()
    gone = make_event()
    UsageEvent.objects.filter(pk=gone.pk).delete()
    report = usage_rollup()
    assert (report.events, report.missing) == (1, 1)
    assert not PendingUsageEvent.objects.exists()
    assert stored_aggregates() == expected_aggregates([kept])


def test_progress_reports_each_batch():
    make_events(event_fields() for _ in range(3))
    lines: list[str] = []
    usage_rollup(batch_size=2, progress=lines.append)
    assert lines == ["batch 1: 2 events (2 in all)", "batch 2: 1 events (3 in all)"]


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(RollupError, match="batch size"):
        usage_rollup(batch_size=0)


def test_rollup_refuses_to_run_while_locked():
    make_event()
    with maintenance_lock(ROLLUP_LOCK, ttl=60), pytest.raises(LockBusy):
        usage_rollup()
    assert usage_rollup().events == 1


def test_a_rollup_that_lost_its_lock_stops_after_a_committed_batch():
    from django.conf import settings

    from usage.locks import LockLost, shared_redis
    from usage.models import MaintenanceLease

    def steal(line: str) -> None:
        # As if the lease had expired and another worker had taken it.
        if settings.REDIS_URL:
            shared_redis.sync_client().set(f"gateway:lock:{ROLLUP_LOCK}", "other")
        else:
            MaintenanceLease.objects.filter(name=ROLLUP_LOCK).update(owner="other")

    make_events(event_fields() for _ in range(3))
    with pytest.raises(LockLost):
        usage_rollup(batch_size=2, progress=steal)
    assert PendingUsageEvent.objects.count() == 1
    if settings.REDIS_URL:
        shared_redis.sync_client().delete(f"gateway:lock:{ROLLUP_LOCK}")
    else:
        MaintenanceLease.objects.filter(name=ROLLUP_LOCK).update(owner="", expires_at=None)
    assert usage_rollup().events == 1
    assert_exact()


# --- rebuild --------------------------------------------------------------------------------


def spread_events() -> None:
    make_events(
        event_fields(
            occurred_at=utc(2026, 2, 25) + timedelta(hours=7 * n, seconds=n),
            user_id=n % 3,
            provider=("anthropic", "bedrock")[n % 2],
            status_code=(200, 200, 529)[n % 3],
            input_tokens=n * 1000,
        )
        for n in range(40)
    )


def test_rebuild_gives_identical_totals():
    spread_events()
    usage_rollup(batch_size=7)
    before = stored_aggregates()
    make_event(occurred_at=utc(2026, 3, 3))  # queued: rolled up first, counted once
    lines: list[str] = []
    report = usage_aggregates_rebuild(progress=lines.append)
    assert report.rolled_up_first == 1
    assert (report.start, report.events) == (utc(2026, 2, 1), 41)
    assert any("weeks and months" in line for line in lines)
    assert_exact()
    assert stored_aggregates() != before
    assert usage_aggregates_rebuild().events == 41
    assert_exact()


def test_rebuild_replaces_damaged_rows():
    spread_events()
    usage_rollup()
    UsageAggregate.objects.filter(bucket=Bucket.HOUR).update(requests=999)
    UsageAggregate.objects.filter(bucket=Bucket.MONTH).delete()
    UsageAggregate.objects.create(
        bucket=Bucket.WEEK, bucket_start=utc(2026, 2, 2), provider="x", model="y"
    )
    usage_aggregates_rebuild()
    assert_exact()


def test_rebuild_since_a_day_keeps_older_rows_and_fixes_coarser_ones():
    spread_events()
    usage_rollup()
    UsageAggregate.objects.filter(bucket=Bucket.MINUTE, bucket_start__lt=utc(2026, 3, 1)).update(
        requests=500
    )
    UsageAggregate.objects.filter(bucket__in=[Bucket.WEEK, Bucket.MONTH]).update(requests=0)
    report = usage_aggregates_rebuild(since=utc(2026, 3, 1, 15, 30))
    assert report.start == utc(2026, 3, 1)
    damaged = UsageAggregate.objects.filter(bucket=Bucket.MINUTE, bucket_start__lt=utc(2026, 3, 1))
    assert set(damaged.values_list("requests", flat=True)) == {500}

    # Weeks and months from the rebuilt day on are sums of days again; February's month rows,
    # which end before it, were left alone.
    def total(bucket: str, start: datetime, end: datetime) -> int:
        rows = UsageAggregate.objects.filter(
            bucket=bucket, bucket_start__gte=start, bucket_start__lt=end
        )
        return sum(rows.values_list("requests", flat=True))

    march, april = utc(2026, 3, 1), utc(2026, 4, 1)
    assert total(Bucket.MONTH, march, april) == total(Bucket.DAY, march, april) == 26
    assert total(Bucket.MONTH, utc(2026, 2, 1), march) == 0
    assert total(Bucket.WEEK, utc(2026, 2, 23), april) == total(Bucket.DAY, utc(2026, 2, 23), april)


def test_rebuild_applies_a_corrected_price():
    make_event(
        occurred_at=utc(2026, 3, 2, 10),
        requested_model="new-model",
        upstream_model="new-model",
        input_tokens=10**6,
        output_tokens=0,
    )
    usage_rollup()
    assert row(Bucket.DAY, utc(2026, 3, 2)).cost_usd == 0
    make_price(model="new-model", valid_from=utc(2026, 1, 1), input_per_mtok="2")
    usage_aggregates_rebuild(since=utc(2026, 3, 2))
    assert row(Bucket.DAY, utc(2026, 3, 2)).cost_usd == 2
    assert row(Bucket.MONTH, utc(2026, 3, 1)).cost_usd == 2


def test_rebuild_of_nothing_does_nothing():
    report = usage_aggregates_rebuild()
    assert (report.start, report.days) == (None, 0)


def test_rebuild_refuses_a_future_start_and_a_pruned_period():
    with pytest.raises(RollupError, match="future"):
        usage_aggregates_rebuild(since=datetime.now(UTC) + timedelta(minutes=5))
    rollup_state_row = UsageRollupState.objects.create(pk=1, pruned_before=utc(2026, 3, 1))
    with pytest.raises(RollupError, match="pruned"):
        usage_aggregates_rebuild(since=utc(2026, 2, 28, 23))
    assert (
        usage_aggregates_rebuild(since=utc(2026, 3, 1, 5)).start == rollup_state_row.pruned_before
    )


def test_rebuild_needs_both_locks():
    for name in (ROLLUP_LOCK, PRUNE_LOCK):
        with maintenance_lock(name, ttl=60), pytest.raises(LockBusy):
            usage_aggregates_rebuild()


# --- prune ----------------------------------------------------------------------------------

NOW = utc(2026, 6, 15, 13, 45)


def test_prune_cutoff_is_a_utc_midnight():
    assert prune_cutoff(retention_days=90, now=NOW) == utc(2026, 3, 17)


def test_prune_deletes_only_old_rolled_up_events_and_no_total_changes():
    old = [make_event(occurred_at=utc(2026, 3, 16, 23, 59, 59)) for _ in range(3)]
    recent = make_event(occurred_at=utc(2026, 3, 17))
    usage_rollup()
    queued_old = make_event(occurred_at=utc(2026, 3, 10))
    before = stored_aggregates()
    lines: list[str] = []

    report = usage_events_prune(retention_days=90, now=NOW, batch_size=2, progress=lines.append)

    assert (report.deleted, report.kept_pending, report.cutoff) == (3, 1, utc(2026, 3, 17))
    assert lines == ["deleted 2 events", "deleted 3 events"]
    assert set(UsageEvent.objects.values_list("pk", flat=True)) == {recent.pk, queued_old.pk}
    assert stored_aggregates() == before
    assert UsageRollupState.objects.get(pk=1).pruned_before == utc(2026, 3, 17)
    # The old queued event is still counted, and pruned next time.
    usage_rollup()
    assert stored_aggregates() == expected_aggregates([*old, recent, queued_old])
    assert usage_events_prune(retention_days=90, now=NOW).deleted == 1


def test_prune_dry_run_counts_without_deleting():
    make_event(occurred_at=utc(2026, 1, 1))
    usage_rollup()
    make_event(occurred_at=utc(2026, 1, 1))
    report = usage_events_prune(retention_days=90, now=NOW, dry_run=True)
    assert (report.deleted, report.kept_pending, report.dry_run) == (1, 1, True)
    assert UsageEvent.objects.count() == 2
    assert not UsageRollupState.objects.filter(pruned_before__isnull=False).exists()


def test_prune_with_nothing_due_leaves_the_horizon_alone():
    make_event(occurred_at=utc(2026, 6, 1))
    usage_rollup()
    assert usage_events_prune(retention_days=90, now=NOW).deleted == 0
    assert not UsageRollupState.objects.filter(pruned_before__isnull=False).exists()


def test_late_events_for_pruned_days_still_add_up_and_rebuild_keeps_them():
    old = make_event(occurred_at=utc(2026, 3, 1, 10))
    usage_rollup()
    usage_events_prune(retention_days=90, now=NOW)
    late = make_event(occurred_at=utc(2026, 3, 1, 10, 0, 30))
    recent = make_event(occurred_at=utc(2026, 6, 1))
    usage_rollup()
    assert row(Bucket.MINUTE, utc(2026, 3, 1, 10, 0)).requests == 2
    expected = expected_aggregates([old, late, recent])
    assert stored_aggregates() == expected
    report = usage_aggregates_rebuild()
    assert report.start == utc(2026, 3, 17)
    assert stored_aggregates() == expected


def test_prune_refuses_bad_arguments_and_waits_for_a_rebuild():
    with pytest.raises(RollupError, match="retention"):
        usage_events_prune(retention_days=0)
    with pytest.raises(RollupError, match="batch size"):
        usage_events_prune(retention_days=1, batch_size=0)
    make_event(occurred_at=utc(2020, 1, 1))
    usage_rollup()
    with maintenance_lock(PRUNE_LOCK, ttl=60), pytest.raises(LockBusy):
        usage_events_prune(retention_days=1)
    # The rollup's own lock does not hold the prune up.
    with maintenance_lock(ROLLUP_LOCK, ttl=60):
        assert usage_events_prune(retention_days=1).deleted == 1


def test_the_enqueue_trigger_survives_every_migration():
    # A migration that rebuilds the events table on SQLite drops the trigger; it must create
    # it again, or new events would never be counted.
    from usage.rollup import sql

    assert sql.enqueue_trigger_exists()


def test_a_missing_enqueue_trigger_is_logged(monkeypatch, caplog):
    from usage.rollup import sql

    monkeypatch.setattr(sql, "enqueue_trigger_exists", lambda: False)
    usage_rollup()
    assert "the trigger usage_enqueue_events is missing" in caplog.text


def test_events_inserted_with_raw_sql_are_queued_too():
    from django.db import connection

    fields = event_fields(occurred_at=utc(2026, 3, 2, 10))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO usage_usageevent (event_id, occurred_at, recorded_at, provider,"
            " requested_model, upstream_model, input_tokens, output_tokens, cache_read_tokens,"
            " cache_write_tokens, status_code, streamed, client_disconnected, latency_ms,"
            " fallback_reason, session_id, request_id) VALUES (%s, %s, %s, 'anthropic', 'm',"
            " '', 1, 2, 3, 4, 200, FALSE, FALSE, 0, '', '', '')",
            [
                UsageEvent._meta.get_field("event_id").get_db_prep_value(uuid.uuid4(), connection),
                connection.ops.adapt_datetimefield_value(fields["occurred_at"]),
                connection.ops.adapt_datetimefield_value(fields["occurred_at"]),
            ],
        )
    assert PendingUsageEvent.objects.count() == 1
    assert usage_rollup().events == 1
    assert row(Bucket.MINUTE, utc(2026, 3, 2, 10), model="m").cache_write_tokens == 4
