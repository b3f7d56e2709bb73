"""What a budget period has spent according to the usage tables (the seed of its counters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from governance.policy import GLOBAL, USD_UNITS, USER, BudgetRule
from governance.selectors import budget_spent
from usage.models import UsageEvent
from usage.pricing import cost_of_tokens, price_windows
from usage.tests.factories import make_events, make_price

START = datetime(2026, 3, 2, tzinfo=UTC)
END = START + timedelta(days=1)
PRICE_CHANGE = START + timedelta(hours=12, minutes=30)
MODEL = "team-model"


def _rule(scope: str = USER, target_id: int = 7) -> BudgetRule:
    return BudgetRule(
        budget_id=1, label="daily", scope=scope, target_id=target_id, period="day", limit_tokens=1
    )


def _expected(events: list[UsageEvent]) -> tuple[Decimal, int]:
    """Each event priced on its own, as the rollup prices it."""
    windows = price_windows({(e.provider, e.upstream_model, e.requested_model) for e in events})
    cost = Decimal(0)
    tokens = 0
    for event in events:
        tokens += (
            event.input_tokens
            + event.output_tokens
            + event.cache_read_tokens
            + event.cache_write_tokens
        )
        if event.cost_usd is not None:
            cost += event.cost_usd
            continue
        key = (event.provider, event.upstream_model, event.requested_model)
        price = next(
            (w for w in windows if w.key == key and w.covers(event.occurred_at)),
            None,
        )
        if price is not None:
            cost += cost_of_tokens(
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cache_read_tokens=event.cache_read_tokens,
                cache_write_tokens=event.cache_write_tokens,
                price=price,
            )
    return cost, tokens


@pytest.mark.django_db
def test_pending_events_are_summed_per_model_and_price_window(
    django_assert_max_num_queries: Any,
) -> None:
    make_price(provider="anthropic", model=MODEL, input_per_mtok="3", output_per_mtok="15")
    make_price(
        provider="anthropic",
        model=MODEL,
        valid_from=PRICE_CHANGE,
        input_per_mtok="1.1",
        output_per_mtok="7.7",
        cache_read_per_mtok="0.13",
    )
    make_price(provider="openai", model="gpt-x", input_per_mtok="2.5", output_per_mtok="10")

    def row(hour: float, **fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "occurred_at": START + timedelta(hours=hour),
            "user_id": 7,
            "provider": "anthropic",
            "requested_model": MODEL,
            "upstream_model": MODEL,
            "input_tokens": 1_234,
            "output_tokens": 567,
            "cache_read_tokens": 89,
        }
        values.update(fields)
        return values

    counted = make_events(
        [row(hour) for hour in (1, 5.5, 12.25)]  # before the price change
        + [row(hour, input_tokens=333) for hour in (12.75, 20)]  # after it
        + [row(3, provider="openai", requested_model="gpt-x", upstream_model="gpt-x")]
        + [row(4, requested_model="unpriced", upstream_model="unpriced")]
        + [row(6, cost_usd=Decimal("0.12345678"))]
    )
    make_events(
        [
            row(2, user_id=8),  # someone else's
            row(-1),  # the day before
            row(24),  # the next day
        ]
    )
    expected_cost, expected_tokens = _expected(counted)
    assert expected_cost > 0

    with django_assert_max_num_queries(8):
        units, tokens = budget_spent(_rule(), start=START, end=END)
    assert tokens == expected_tokens
    # The model's tokens are priced summed: under one unit (1e-8 USD) of rounding per event.
    assert abs(units - expected_cost * USD_UNITS) <= len(counted)

    # Everyone's, for a global budget: the other user's event counts too.
    everyone = [*counted, *UsageEvent.objects.filter(user_id=8)]
    units, tokens = budget_spent(_rule(GLOBAL, 0), start=START, end=END)
    assert tokens == _expected(everyone)[1]


@pytest.mark.django_db
def test_a_model_priced_only_from_within_the_period_costs_nothing_before_its_price() -> None:
    make_price(provider="anthropic", model=MODEL, valid_from=PRICE_CHANGE, input_per_mtok="2")
    events = make_events(
        [
            {
                "occurred_at": START + timedelta(hours=hour),
                "user_id": 7,
                "requested_model": MODEL,
                "upstream_model": MODEL,
                "input_tokens": 1_000_000,
                "output_tokens": 0,
            }
            for hour in (1, 13)
        ]
    )
    units, tokens = budget_spent(_rule(), start=START, end=END)
    assert tokens == 2_000_000
    assert units == 2 * USD_UNITS  # only the event after the price began: 1M tokens at $2
    assert _expected(events)[0] == 2
