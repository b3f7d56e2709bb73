"""Prices and the cost of usage events.

An event costs ``tokens × price per million tokens`` for each of its four token kinds, at the
``Price`` row of its provider and requested model that is valid at the event's ``occurred_at``
(the row with the latest ``valid_from`` not after it). The cost is a ``Decimal`` rounded half up
to 8 decimal places (1e-8 USD), once per event, so that sums of stored event costs and sums of
aggregates agree to the last digit.

Who computes it: usage.rollup, when it rolls an event up, fills ``UsageEvent.cost_usd`` where the
recorder left it NULL, with the same integer arithmetic as ``cost_of_tokens`` (done in SQL for
speed). A cost is frozen once filled: a price row added later does not change rolled-up events.
An event without a price (unknown model, or before the first ``valid_from``) costs 0; the rollup
counts such events and logs each unknown provider/model once per process.

Model names fall back from the exact requested name to the name without a ``[…]`` tag, without
a ``-YYYYMMDD`` snapshot date and without ``-latest`` (``model_name_candidates``), so a new
snapshot of a known model is priced like its alias until an admin adds its own row.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from usage.models import Price

logger = logging.getLogger(__name__)

COST_DECIMAL_PLACES = 8
# Prices carry 6 decimal places; in millionths of a dollar per million tokens they are integers,
# and tokens × that integer is the exact cost in units of 1e-12 USD.
PRICE_SCALE = 10**6
PICO_PER_COST_UNIT = 10**4  # 1e-8 USD (the stored cost's last digit) in 1e-12 USD

_DATE_SUFFIX = re.compile(r"-\d{8}$")
_TAG_SUFFIX = re.compile(r"\[[^\]]*\]$")


class PriceLike(Protocol):
    """A Price row or a PriceWindow."""

    @property
    def input_per_mtok(self) -> Decimal: ...
    @property
    def output_per_mtok(self) -> Decimal: ...
    @property
    def cache_read_per_mtok(self) -> Decimal: ...
    @property
    def cache_write_per_mtok(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class PriceWindow:
    """The price of (provider, requested model) from ``valid_from`` until ``valid_until``."""

    provider: str
    model: str
    valid_from: datetime
    valid_until: datetime | None
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal
    cache_write_per_mtok: Decimal

    def covers(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_until is None or moment < self.valid_until)


def price_micros(per_mtok: Decimal) -> int:
    """A price per million tokens in millionths of a dollar (exact for 6 decimal places)."""
    scaled = Decimal(per_mtok) * PRICE_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {per_mtok} has more than 6 decimal places")
    return int(scaled)


def cost_units(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    price: PriceLike,
) -> int:
    """The cost in units of 1e-8 USD, rounded half up (the rollup's SQL does the same)."""
    picousd = (
        input_tokens * price_micros(price.input_per_mtok)
        + output_tokens * price_micros(price.output_per_mtok)
        + cache_read_tokens * price_micros(price.cache_read_per_mtok)
        + cache_write_tokens * price_micros(price.cache_write_per_mtok)
    )
    return (picousd + PICO_PER_COST_UNIT // 2) // PICO_PER_COST_UNIT


def units_to_usd(units: int) -> Decimal:
    return Decimal(units).scaleb(-COST_DECIMAL_PLACES)


def cost_of_tokens(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    price: PriceLike,
) -> Decimal:
    """The cost in USD of one request's tokens at ``price``."""
    return units_to_usd(
        cost_units(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            price=price,
        )
    )


def model_name_candidates(model: str) -> list[str]:
    """Names to look a price up under, most specific first."""
    names = [model]
    base = _TAG_SUFFIX.sub("", model).strip()
    for candidate in (base, _DATE_SUFFIX.sub("", base), base.removesuffix("-latest")):
        if candidate and candidate not in names:
            names.append(candidate)
    return names


def price_windows(pairs: Iterable[tuple[str, str]]) -> list[PriceWindow]:
    """The price windows of each (provider, requested model) pair; pairs without prices have
    none. One query."""
    wanted = set(pairs)
    if not wanted:
        return []
    names = {name for _, model in wanted for name in model_name_candidates(model)}
    rows: dict[tuple[str, str], list[Price]] = defaultdict(list)
    for price in Price.objects.filter(
        provider__in={provider for provider, _ in wanted}, model__in=names
    ).order_by("valid_from"):
        rows[(price.provider, price.model)].append(price)

    windows: list[PriceWindow] = []
    for provider, model in sorted(wanted):
        found = next(
            (rows[(provider, n)] for n in model_name_candidates(model) if (provider, n) in rows),
            [],
        )
        for index, price in enumerate(found):
            following = found[index + 1] if index + 1 < len(found) else None
            windows.append(
                PriceWindow(
                    provider=provider,
                    model=model,
                    valid_from=price.valid_from,
                    valid_until=following.valid_from if following else None,
                    input_per_mtok=price.input_per_mtok,
                    output_per_mtok=price.output_per_mtok,
                    cache_read_per_mtok=price.cache_read_per_mtok,
                    cache_write_per_mtok=price.cache_write_per_mtok,
                )
            )
    return windows


def price_at(*, provider: str, model: str, at: datetime) -> PriceWindow | None:
    """The price of ``model`` on ``provider`` valid at ``at``, if any."""
    return next((w for w in price_windows([(provider, model)]) if w.covers(at)), None)


def event_cost(
    *,
    provider: str,
    model: str,
    occurred_at: datetime,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
) -> Decimal | None:
    """The cost of one event, or None when no price is valid for it (the rollup then uses 0)."""
    price = price_at(provider=provider, model=model, at=occurred_at)
    if price is None:
        return None
    return cost_of_tokens(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        price=price,
    )


_reported_unpriced: set[tuple[str, str]] = set()


def report_unpriced(provider: str, model: str, count: int) -> None:
    """Log, once per process and model, that events of a model without a price cost 0."""
    if (provider, model) in _reported_unpriced:
        return
    _reported_unpriced.add((provider, model))
    logger.warning(
        "usage: no price for %s/%s; %d event(s) counted at cost 0 (add a Price row)",
        provider,
        model or "<empty>",
        count,
    )
