"""Factories for usage tests: events, prices, and the expected aggregates of a set of events.

``expected_aggregates`` recomputes in Python what usage.rollup must have stored, so tests compare
the whole UsageAggregate table against it.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from usage.models import Price, UsageAggregate, UsageEvent
from usage.pricing import (
    PriceKey,
    PriceWindow,
    cost_of_tokens,
    free_by_default,
    price_windows,
    providers_with_prices,
)
from usage.rollup import LEVELS, bucket_floor

_counter = itertools.count(1)

DEFAULT_TIME = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def event_fields(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a plausible UsageEvent (no database access)."""
    number = next(_counter)
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": DEFAULT_TIME,
        "user_id": 1,
        "access_key_id": 1,
        "provider": "anthropic",
        "requested_model": "claude-sonnet-4-5",
        "upstream_model": "claude-sonnet-4-5-20250929",
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "status_code": 200,
        "latency_ms": 900,
        "request_id": f"req_{number}",
    }
    fields.update(overrides)
    return fields


def make_event(**overrides: Any) -> UsageEvent:
    """Create one UsageEvent; ``user_id``/``access_key_id`` need no real rows."""
    return UsageEvent.objects.create(**event_fields(**overrides))


def make_events(rows: Iterable[dict[str, Any]]) -> list[UsageEvent]:
    return UsageEvent.objects.bulk_create([UsageEvent(**event_fields(**row)) for row in rows])


def make_price(
    *,
    provider: str = "anthropic",
    model: str = "claude-sonnet-4-5",
    valid_from: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    input_per_mtok: str = "3",
    output_per_mtok: str = "15",
    cache_read_per_mtok: str = "0.30",
    cache_write_per_mtok: str = "3.75",
) -> Price:
    return Price.objects.create(
        provider=provider,
        model=model,
        valid_from=valid_from,
        input_per_mtok=Decimal(input_per_mtok),
        output_per_mtok=Decimal(output_per_mtok),
        cache_read_per_mtok=Decimal(cache_read_per_mtok),
        cache_write_per_mtok=Decimal(cache_write_per_mtok),
    )


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    def add_event(self, event: UsageEvent, cost: Decimal) -> None:
        self.requests += 1
        self.errors += int(event.status_code >= 400)
        self.fallbacks += int(event.fallback_reason != "")
        self.input_tokens += event.input_tokens
        self.output_tokens += event.output_tokens
        self.cache_read_tokens += event.cache_read_tokens
        self.cache_write_tokens += event.cache_write_tokens
        self.cost_usd += cost

    def add_row(self, row: UsageAggregate) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.fallbacks += row.fallbacks
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cache_read_tokens += row.cache_read_tokens
        self.cache_write_tokens += row.cache_write_tokens
        self.cost_usd += row.cost_usd


AggregateKey = tuple[str, datetime, int, int, str, str]


class PriceBook:
    """The price table as usage.pricing resolves it, loaded once per price key, with the
    providers that are free by default read once."""

    def __init__(self) -> None:
        self._windows: dict[PriceKey, list[PriceWindow]] = {}
        self._priced_providers: set[str] | None = None

    def cost(self, event: UsageEvent) -> Decimal:
        """The cost the rollup must give ``event``: the recorder's, else the price's, else 0."""
        if event.cost_usd is not None:
            return Decimal(event.cost_usd)
        price = self.price(event)
        if price is None:
            return Decimal(0)
        return cost_of_tokens(
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
            price=price,
        )

    def price(self, event: UsageEvent) -> PriceWindow | None:
        key = (event.provider, event.upstream_model, event.requested_model)
        if key not in self._windows:
            self._windows[key] = price_windows([key])
        return next((w for w in self._windows[key] if w.covers(event.occurred_at)), None)

    def unpriced(self, event: UsageEvent) -> bool:
        """Whether the rollup must report ``event`` as unpriced."""
        if event.cost_usd is not None or self.price(event) is not None:
            return False
        if self._priced_providers is None:
            self._priced_providers = providers_with_prices()
        return not free_by_default(event.provider, self._priced_providers)


def expected_cost(event: UsageEvent) -> Decimal:
    return PriceBook().cost(event)


def expected_aggregates(events: Iterable[UsageEvent]) -> dict[AggregateKey, Totals]:
    """Every aggregate row the given events make, keyed like the table's unique constraint."""
    prices = PriceBook()
    expected: dict[AggregateKey, Totals] = defaultdict(Totals)
    for event in events:
        cost = prices.cost(event)
        for level in LEVELS:
            key = (
                level,
                bucket_floor(level, event.occurred_at),
                event.user_id or 0,
                event.access_key_id or 0,
                event.provider,
                event.requested_model,
            )
            expected[key].add_event(event, cost)
    return dict(expected)


def stored_aggregates() -> dict[AggregateKey, Totals]:
    stored: dict[AggregateKey, Totals] = {}
    for row in UsageAggregate.objects.all():
        key = (
            row.bucket,
            row.bucket_start,
            row.user_id,
            row.access_key_id,
            row.provider,
            row.model,
        )
        assert key not in stored, f"duplicate aggregate row {key}"
        stored[key] = Totals()
        stored[key].add_row(row)
    return stored
