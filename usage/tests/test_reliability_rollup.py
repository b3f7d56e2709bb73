"""Celery worker and beat stopped for a while: usage events pile up un-rolled; once the rollup
runs again it catches up to exactly the totals of the raw events, at every bucket size.

Events arrive the way the gateway writes them (the usage writer, and spool replays of late
events, one of them replayed twice), span minute, hour, day, week and month boundaries and a
price change, and include unpriced models, errors and fallbacks. The expected aggregates are
recomputed here in Python from the raw events, independently of the rollup's SQL.
"""

from __future__ import annotations

import random
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway_project.celery import app as celery_app
from usage.models import Bucket, PendingUsageEvent, Price, UsageAggregate, UsageEvent
from usage.pricing import event_cost
from usage.recording import (
    Spool,
    UsageRecord,
    flush_usage_events,
    record_usage_event,
    usage_writer,
)
from usage.rollup import LEVELS, bucket_floor, usage_rollup
from usage.tasks import rollup_usage

pytestmark = pytest.mark.django_db(transaction=True)

# A Friday late in a month: the events below cross the week, the month and a price change.
START = datetime(2026, 1, 30, 21, 40, tzinfo=UTC)
PRICE_CHANGE = START + timedelta(hours=30)
SPAN = timedelta(days=5)
MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-unpriced-x"]
COUNTS = (
    "requests",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)

Key = tuple[datetime, int, int, str, str]


@pytest.fixture
def prices() -> None:
    def price(provider: str, model: str, valid_from: datetime, per_mtok: str) -> None:
        base = Decimal(per_mtok)
        Price.objects.create(
            provider=provider,
            model=model,
            valid_from=valid_from,
            input_per_mtok=base,
            output_per_mtok=base * 5,
            cache_read_per_mtok=base / 10,
            cache_write_per_mtok=base * Decimal("1.25"),
        )

    Price.objects.filter(model__in=MODELS).delete()
    for provider in ("anthropic", "bedrock"):
        price(provider, "claude-sonnet-4-6", START - timedelta(days=60), "3.000001")
        price(provider, "claude-sonnet-4-6", PRICE_CHANGE, "2.5")
        price(provider, "claude-haiku-4-5", START - timedelta(days=60), "0.8")


@pytest.fixture
def private_spool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The writer's spool in this test's directory: other test runs replay the shared one."""
    directory = tmp_path / "writer-spool"
    monkeypatch.setattr(usage_writer().spool, "directory", directory)
    return directory


def _random_records(rng: random.Random, count: int, *, late: bool = False) -> list[UsageRecord]:
    records = []
    for _ in range(count):
        offset = rng.random() * SPAN.total_seconds()
        occurred = START + timedelta(seconds=offset)
        fallback = rng.random() < 0.2
        records.append(
            UsageRecord(
                provider="bedrock" if fallback else "anthropic",
                user_id=rng.choice([1, 2, 3, None]),
                access_key_id=rng.choice([10, 11, 12, None]),
                requested_model=rng.choice(MODELS),
                input_tokens=rng.randrange(0, 200_000),
                output_tokens=rng.randrange(0, 30_000),
                cache_read_tokens=rng.choice([0, 0, rng.randrange(0, 500_000)]),
                cache_write_tokens=rng.choice([0, rng.randrange(0, 50_000)]),
                status_code=rng.choice([200, 200, 200, 400, 429, 500, 529, 499]),
                streamed=rng.random() < 0.5,
                fallback_reason="anthropic_529" if fallback else "",
                latency_ms=rng.randrange(1, 60_000),
                request_id=f"gwreq_{'late' if late else 'live'}_{rng.getrandbits(64):016x}",
                occurred_at=occurred,
            )
        )
    return records


def _expected(level: str) -> dict[Key, dict[str, Any]]:
    sums: dict[Key, Counter[str]] = defaultdict(Counter)
    costs: dict[Key, Decimal] = defaultdict(Decimal)
    for event in UsageEvent.objects.all():
        key = (
            bucket_floor(level, event.occurred_at),
            event.user_id or 0,
            event.access_key_id or 0,
            event.provider,
            event.requested_model,
        )
        row = sums[key]
        row["requests"] += 1
        row["errors"] += event.status_code >= 400
        row["fallbacks"] += event.fallback_reason != ""
        for name in COUNTS[3:]:
            row[name] += getattr(event, name)
        cost = event_cost(
            provider=event.provider,
            model=event.requested_model,
            occurred_at=event.occurred_at,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
        )
        costs[key] += cost or Decimal(0)
    return {
        key: {**{name: row[name] for name in COUNTS}, "cost_usd": costs[key]}
        for key, row in sums.items()
    }


def _stored(level: str) -> dict[Key, dict[str, Any]]:
    return {
        (row.bucket_start, row.user_id, row.access_key_id, row.provider, row.model): {
            **{name: getattr(row, name) for name in COUNTS},
            "cost_usd": Decimal(row.cost_usd).quantize(Decimal("0.00000001")),
        }
        for row in UsageAggregate.objects.filter(bucket=level)
    }


def _assert_aggregates_exact() -> int:
    """Every bucket size holds exactly the raw events' sums; returns the number of rows."""
    rows = 0
    for level in LEVELS:
        expected, stored = _expected(level), _stored(level)
        assert set(stored) == set(expected), level
        for key, sums in expected.items():
            assert stored[key] == sums, (level, key)
        rows += len(stored)
    return rows


def _catch_up_with_the_task() -> int:
    """What beat would do once back: run the task until it reports the queue empty."""
    rolled = 0
    for _ in range(10):
        result = rollup_usage()
        rolled += int(result["events"])
        if result["complete"]:
            return rolled
    raise AssertionError("the rollup task did not catch up in 10 runs")


def _say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():  # past pytest's capture: CI logs show it with or without -s
        sys.stdout.write(f"\n[reliability] {line}\n")


def test_rollup_catches_up_exactly_after_worker_and_beat_were_stopped(
    prices: None, private_spool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20260130)
    schedule = celery_app.conf.beat_schedule.values()
    assert any(entry["task"] == "usage.tasks.rollup_usage" for entry in schedule)

    # Worker and beat stopped: the gateway keeps recording, nothing rolls up.
    live = _random_records(rng, 700)
    for record in live:
        record_usage_event(record)
    flush_usage_events()
    assert UsageEvent.objects.count() == len(live)
    assert PendingUsageEvent.objects.count() == len(live)
    assert not UsageAggregate.objects.exists()

    rolled = _catch_up_with_the_task()
    assert rolled == len(live)
    assert not PendingUsageEvent.objects.exists()
    _assert_aggregates_exact()

    # Stopped again. Late events arrive for buckets already rolled up: spooled during a database
    # outage and replayed, one spool file replayed a second time (after a crash mid-replay), and
    # new live events beside them.
    spooled = _random_records(rng, 150, late=True)
    spool = Spool(tmp_path / "outage-spool")
    spool.append(spooled[:100])
    assert spool.replay() == 100
    spool.append(spooled[100:])
    spool.append(spooled[:40])  # the same events again: written twice, stored once
    assert spool.replay() == 90
    more_live = _random_records(rng, 200)
    for record in more_live:
        record_usage_event(record)
    flush_usage_events()
    total = len(live) + len(spooled) + len(more_live)
    assert UsageEvent.objects.count() == total
    assert PendingUsageEvent.objects.count() == len(spooled) + len(more_live)
    assert spool.depth() == 0

    # A manual catch-up in small batches, as an operator might run it.
    report = usage_rollup(batch_size=97)
    assert report.complete and report.batches >= 4
    assert report.events == len(spooled) + len(more_live)
    rows = _assert_aggregates_exact()

    # Nothing queued: a rerun changes nothing.
    before = _stored(Bucket.MONTH)
    assert usage_rollup().events == 0
    assert _stored(Bucket.MONTH) == before

    raw = UsageEvent.objects.count()
    in_aggregates = sum(row["requests"] for row in _stored(Bucket.MONTH).values())
    _say(
        capsys,
        f"rollup after worker/beat stop: events recorded {raw}, events in aggregates "
        f"{in_aggregates}, events lost {raw - in_aggregates}, aggregate rows {rows}",
    )
    assert in_aggregates == raw == total
