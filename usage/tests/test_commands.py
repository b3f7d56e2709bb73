"""The rollup_usage and prune_usage_events commands: output, options and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from usage.locks import maintenance_lock
from usage.models import Bucket, UsageAggregate, UsageEvent, UsageRollupState
from usage.rollup import PRUNE_LOCK, ROLLUP_LOCK, usage_rollup
from usage.tests.factories import (
    event_fields,
    expected_aggregates,
    make_event,
    make_events,
    stored_aggregates,
)

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def spread() -> None:
    make_events(
        event_fields(occurred_at=datetime(2026, 2, 20, tzinfo=UTC) + timedelta(hours=9 * n))
        for n in range(30)
    )
    make_event(requested_model="mystery", upstream_model="mystery")


# --- rollup_usage ---------------------------------------------------------------------------


def test_rollup_usage_rolls_up_with_progress_and_warns_about_unpriced_models():
    spread()
    output = run("rollup_usage", "--batch-size", "20")
    assert "batch 1: 20 events (20 in all)" in output
    assert "batch 2: 11 events (31 in all)" in output
    assert "1 events of anthropic/mystery have no price: cost 0" in output
    assert output.rstrip().endswith("Rolled up 31 events in 2 batches.")
    assert stored_aggregates() == expected_aggregates(UsageEvent.objects.all())
    assert "Rolled up 0 events in 0 batches." in run("rollup_usage")


def test_quiet_rollup_prints_only_the_summary():
    spread()
    out = StringIO()
    call_command("rollup_usage", "--batch-size", "5", verbosity=0, stdout=out)
    assert "batch 1" not in out.getvalue()
    assert "Rolled up 31 events in 7 batches." in out.getvalue()


def test_rebuild_gives_identical_totals():
    spread()
    usage_rollup()
    before = stored_aggregates()
    UsageAggregate.objects.filter(bucket=Bucket.DAY).delete()
    output = run("rollup_usage", "--rebuild")
    assert "2026-02-20: 3 events (3 in all)" in output
    assert "Rebuilt aggregates from 2026-02-01 (UTC): 31 events over" in output
    assert stored_aggregates() == before


def test_rebuild_since_a_date():
    spread()
    usage_rollup()
    before = stored_aggregates()
    output = run("rollup_usage", "--rebuild", "--since", "2026-03-01T09:00:00+09:00")
    assert "Rebuilt aggregates from 2026-03-01 (UTC)" in output
    assert "2026-02-28" not in output
    assert stored_aggregates() == before


def test_rebuild_with_no_data():
    assert "Nothing to rebuild" in run("rollup_usage", "--rebuild")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-03-01"], "--since only applies to --rebuild"),
        (["--rebuild", "--since", "yesterday"], "not an ISO 8601 date"),
        (["--rebuild", "--since", "2026-13-01"], "not an ISO 8601 date"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_rollup_usage_refuses_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        run("rollup_usage", *args)


def test_rebuild_refuses_a_future_start():
    future = (timezone.now() + timedelta(days=2)).isoformat()
    with pytest.raises(CommandError, match="in the future"):
        run("rollup_usage", "--rebuild", "--since", future)


def test_rebuild_refuses_a_pruned_period():
    UsageRollupState.objects.create(pk=1, pruned_before=datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(CommandError, match="have been pruned"):
        run("rollup_usage", "--rebuild", "--since", "2026-02-15")


@pytest.mark.parametrize("lock", [ROLLUP_LOCK, PRUNE_LOCK])
def test_rollup_usage_refuses_to_overlap_another_job(lock):
    with maintenance_lock(lock, ttl=60), pytest.raises(CommandError, match="is running"):
        run("rollup_usage", "--rebuild")
    with maintenance_lock(ROLLUP_LOCK, ttl=60), pytest.raises(CommandError, match="is running"):
        run("rollup_usage")


def test_a_lost_lock_ends_the_command_with_an_error(monkeypatch):
    from usage.locks import LockLost

    def lose(**kwargs):
        raise LockLost("lock usage-rollup expired and was taken over")

    monkeypatch.setattr("usage.management.commands.rollup_usage.usage_aggregates_rebuild", lose)
    monkeypatch.setattr("usage.management.commands.prune_usage_events.usage_events_prune", lose)
    with pytest.raises(CommandError, match="taken over: another job may have started"):
        run("rollup_usage", "--rebuild")
    with pytest.raises(CommandError, match="taken over; run the command again"):
        run("prune_usage_events")


# --- prune_usage_events ---------------------------------------------------------------------


@pytest.fixture
def aged(settings):
    """Three events past a 30-day retention (one not rolled up), one within it."""
    settings.GATEWAY_USAGE_RETENTION_DAYS = 30
    now = timezone.now()
    make_events(event_fields(occurred_at=now - timedelta(days=45)) for _ in range(2))
    make_event(occurred_at=now - timedelta(days=5))
    usage_rollup()
    make_event(occurred_at=now - timedelta(days=60))


def test_prune_dry_run_only_counts(aged):
    output = run("prune_usage_events", "--dry-run")
    assert "Would delete 2 events that occurred before" in output
    assert "(30 days retention)" in output
    assert "Kept 1 older events that are not rolled up yet." in output
    assert UsageEvent.objects.count() == 4


def test_prune_deletes_with_progress_and_keeps_totals(aged):
    before = stored_aggregates()
    output = run("prune_usage_events", "--batch-size", "1")
    assert "deleted 1 events" in output
    assert "deleted 2 events" in output
    assert "Deleted 2 events that occurred before" in output
    assert UsageEvent.objects.count() == 2
    assert stored_aggregates() == before
    assert "Deleted 0 events" in run("prune_usage_events")


def test_prune_refuses_during_a_rebuild_and_a_bad_batch_size(aged):
    with maintenance_lock(PRUNE_LOCK, ttl=60), pytest.raises(CommandError, match="running"):
        run("prune_usage_events")
    with pytest.raises(CommandError, match="batch size"):
        run("prune_usage_events", "--batch-size", "0")
