"""Property tests of the rollup: random event streams over random times (across day, week,
month and year boundaries), written in random order with random late arrivals, interleaved with
partial rollups, reruns, rebuilds and prunes. Whatever the order, the aggregates equal the sums
of the events ever written, and every bucket size reconciles with the finer ones.

Events come from every kind of provider (priced built-ins, Ollama, a generic server with one
priced model) with upstream and requested models that exercise every price lookup path: the
upstream model, its snapshot and Bedrock forms, an alias, a provider prefix, an unpriced
upstream falling back to the requested name. The rollup's SQL must price each event exactly as
usage.pricing.event_cost does in Python, and report as unpriced exactly the events it says
are."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usage.models import (
    Bucket,
    MaintenanceLease,
    PendingUsageEvent,
    Price,
    UsageAggregate,
    UsageEvent,
    UsageRollupState,
)
from usage.pricing import event_cost
from usage.rollup import (
    LEVELS,
    bucket_next,
    usage_aggregates_rebuild,
    usage_events_prune,
    usage_rollup,
)
from usage.tests.factories import (
    PriceBook,
    Totals,
    event_fields,
    expected_aggregates,
    make_price,
    stored_aggregates,
)

pytestmark = pytest.mark.django_db

# Windows of three days that cross interesting boundaries: a month end on a weekend (Sunday
# 2026-03-01 ends the week), a year end in mid-week, and a leap day.
ANCHORS = [
    datetime(2026, 2, 27, 20, tzinfo=UTC),
    datetime(2025, 12, 30, 22, tzinfo=UTC),
    datetime(2028, 2, 28, 23, tzinfo=UTC),
]
SPAN_SECONDS = 3 * 86400
PRICE_CHANGE = timedelta(days=1, hours=5, seconds=17)

event_rows = st.fixed_dictionaries(
    {
        "anchor": st.sampled_from(ANCHORS),
        "offset": st.integers(min_value=0, max_value=SPAN_SECONDS),
        "microsecond": st.integers(min_value=0, max_value=999_999),
        "user_id": st.sampled_from([None, 1, 2]),
        "access_key_id": st.sampled_from([None, 7]),
        "provider": st.sampled_from(["anthropic", "bedrock", "openai", "ollama", "vllm"]),
        "requested_model": st.sampled_from(
            [
                "claude-sonnet-4-5",
                "claude-haiku-4-5-20251001",
                "unpriced-model",
                "openai/gpt-4.1",
                "vllm/llama-3",
                "fast",
            ]
        ),
        # "=" stands for the requested model itself.
        "upstream_model": st.sampled_from(
            [
                "=",
                "",
                "claude-sonnet-4-5-20250929",
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "gpt-4.1-2025-04-14",
                "llama-3",
                "unpriced-upstream",
            ]
        ),
        "input_tokens": st.integers(min_value=0, max_value=2_000_000),
        "output_tokens": st.integers(min_value=0, max_value=200_000),
        "cache_read_tokens": st.integers(min_value=0, max_value=5_000_000),
        "cache_write_tokens": st.integers(min_value=0, max_value=500_000),
        "status_code": st.sampled_from([200, 200, 200, 400, 429, 500, 529]),
        "fallback_reason": st.sampled_from(["", "", "anthropic_rate_limited"]),
        "cost_usd": st.one_of(
            st.none(), st.none(), st.none(), st.decimals(min_value=0, max_value=50, places=8)
        ),
    }
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(event_rows, min_size=1, max_size=12)),
        st.tuples(
            st.just("rollup"),
            st.integers(min_value=1, max_value=5),
            st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
        ),
        st.tuples(st.just("rebuild"), st.booleans()),
        st.tuples(st.just("prune"), st.integers(min_value=0, max_value=3)),
    ),
    min_size=1,
    max_size=14,
)


def event_from(row: dict[str, Any]) -> dict[str, Any]:
    fields = dict(row)
    if fields["upstream_model"] == "=":
        fields["upstream_model"] = fields["requested_model"]
    anchor = fields.pop("anchor")
    occurred = anchor + timedelta(
        seconds=fields.pop("offset"), microseconds=fields.pop("microsecond")
    )
    return event_fields(occurred_at=occurred, **fields)


def reset_tables() -> None:
    for model in (
        UsageEvent,
        PendingUsageEvent,
        UsageAggregate,
        UsageRollupState,
        MaintenanceLease,
    ):
        model.objects.all().delete()


def assert_levels_reconcile() -> None:
    """For every coarse row, each finer bucket size sums to it over the row's window."""
    rows: dict[str, dict[tuple, list[UsageAggregate]]] = {
        level: defaultdict(list) for level in LEVELS
    }
    for aggregate in UsageAggregate.objects.all():
        dims = (aggregate.user_id, aggregate.access_key_id, aggregate.provider, aggregate.model)
        rows[aggregate.bucket][dims].append(aggregate)
    finer_of = {
        Bucket.HOUR: [Bucket.MINUTE],
        Bucket.DAY: [Bucket.MINUTE, Bucket.HOUR],
        Bucket.WEEK: [Bucket.MINUTE, Bucket.HOUR, Bucket.DAY],
        Bucket.MONTH: [Bucket.MINUTE, Bucket.HOUR, Bucket.DAY],
    }
    for level, finer_levels in finer_of.items():
        for dims, coarse_rows in rows[level].items():
            for coarse in coarse_rows:
                end = bucket_next(level, coarse.bucket_start)
                wanted = Totals()
                wanted.add_row(coarse)
                for finer in finer_levels:
                    got = Totals()
                    for candidate in rows[finer][dims]:
                        if coarse.bucket_start <= candidate.bucket_start < end:
                            got.add_row(candidate)
                    assert got == wanted, (level, finer, dims, coarse.bucket_start)


@pytest.fixture
def prices():
    Price.objects.all().delete()
    for anchor in ANCHORS:
        for provider in ("anthropic", "bedrock"):
            make_price(provider=provider, valid_from=anchor - timedelta(days=400))
            # A price change in the middle of each window, at an odd second.
            make_price(
                provider=provider,
                valid_from=anchor + PRICE_CHANGE,
                input_per_mtok="3.123457",
                output_per_mtok="14.999999",
            )
    for anchor in ANCHORS:
        make_price(
            provider="openai",
            model="gpt-4.1",
            valid_from=anchor - timedelta(days=400),
            input_per_mtok="2",
            output_per_mtok="8",
            cache_read_per_mtok="0.5",
            cache_write_per_mtok="2",
        )
        make_price(
            provider="openai",
            model="gpt-4.1",
            valid_from=anchor + PRICE_CHANGE,
            input_per_mtok="1.999999",
        )
    # One priced model on the generic server: its others become unpriced, Ollama stays free.
    make_price(provider="vllm", model="llama-3", input_per_mtok="0.2", output_per_mtok="0.2")
    make_price(
        model="claude-haiku-4-5",
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_mtok="1",
        output_per_mtok="5",
        cache_read_per_mtok="0.1",
        cache_write_per_mtok="1.25",
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=steps)
def test_aggregates_equal_the_events_whatever_the_order(prices, program):
    reset_tables()
    written: list[UsageEvent] = []
    for step in program:
        kind = step[0]
        if kind == "write":
            written += UsageEvent.objects.bulk_create(
                [UsageEvent(**event_from(row)) for row in step[1]]
            )
        elif kind == "rollup":
            usage_rollup(batch_size=step[1], max_batches=step[2])
        elif kind == "rebuild":
            usage_aggregates_rebuild()
        elif kind == "prune":
            # Prune everything that occurred before a day inside the windows.
            anchor = ANCHORS[step[1] % len(ANCHORS)]
            usage_events_prune(retention_days=1, now=anchor + timedelta(days=step[1] + 1))
    usage_rollup(batch_size=4)

    expected = expected_aggregates(written)
    assert stored_aggregates() == expected
    assert_levels_reconcile()
    # Reruns and a rebuild change nothing.
    assert usage_rollup().events == 0
    usage_aggregates_rebuild()
    assert stored_aggregates() == expected
    # And the grand totals per bucket size equal the sums over all raw events written.
    grand = Totals()
    for event in written:
        grand.requests += 1
        grand.input_tokens += event.input_tokens
    for level in LEVELS:
        level_rows = UsageAggregate.objects.filter(bucket=level)
        assert sum(r.requests for r in level_rows) == grand.requests
        assert sum(r.input_tokens for r in level_rows) == grand.input_tokens
        assert sum((r.cost_usd for r in level_rows), Decimal(0)) == sum(
            (t.cost_usd for k, t in expected.items() if k[0] == level), Decimal(0)
        )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(event_rows, min_size=1, max_size=30), batch_size=st.integers(1, 12))
def test_sql_and_python_price_every_event_alike(prices, rows, batch_size):
    """One rollup of random events: every aggregate's cost is the sum of ``event_cost`` over
    its events, and the unpriced count per provider and model is what pricing says."""
    reset_tables()
    written = UsageEvent.objects.bulk_create([UsageEvent(**event_from(row)) for row in rows])
    report = usage_rollup(batch_size=batch_size)

    book = PriceBook()
    months: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    unpriced: Counter[tuple[str, str]] = Counter()
    for event in written:
        python = event_cost(
            provider=event.provider,
            model=event.requested_model,
            upstream_model=event.upstream_model,
            occurred_at=event.occurred_at,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
        )
        assert (python is None) == book.unpriced(event) or event.cost_usd is not None
        if event.cost_usd is None:
            assert (python or Decimal(0)) == book.cost(event)
        months[(event.provider, event.requested_model)] += book.cost(event)
        if book.unpriced(event):
            unpriced[(event.provider, event.requested_model)] += 1
    assert report.unpriced == dict(unpriced)
    stored_months: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in UsageAggregate.objects.filter(bucket=Bucket.MONTH):
        stored_months[(row.provider, row.model)] += row.cost_usd
    assert stored_months == months
    assert stored_aggregates() == expected_aggregates(written)
