"""Prices and the cost of usage events.

An event costs ``tokens × price per million tokens`` for each of its four token kinds, at the
``Price`` row of its provider and model that is valid at the event's ``occurred_at`` (the row
with the latest ``valid_from`` not after it). The cost is a ``Decimal`` rounded half up to 8
decimal places (1e-8 USD), once per event, so that sums of stored event costs and sums of
aggregates agree to the last digit.

Which model's price: the first name, in this order, that has any Price row for the event's
provider (``price_names``):

1. the upstream model (what the provider was asked for: ``gpt-4.1``, a Bedrock model id) and
   its fallbacks (``model_name_candidates``);
2. the requested model (what the client sent) without any ``provider/`` prefix, and its
   fallbacks. So an alias (``fast`` → ``openai/gpt-4.1``) or a prefixed name
   (``openai/gpt-4.1``) is priced as the model that answered, and a Bedrock fallback whose
   model id has no row (``claude-sonnet-4-7`` sent to an unmapped profile) as the model asked
   for.

Fallback names drop a ``[…]`` tag, a provider's packaging of the model (a Bedrock
``us.anthropic.`` prefix and ``-v1:0`` suffix, an ARN path, ``models/``), a snapshot date
(``-YYYYMMDD``, ``-YYYY-MM-DD``), ``-latest`` and a Gemini ``-001`` version, so a new snapshot of a
known model is priced like its alias until an admin adds its own row.

Who computes it: usage.rollup, when it rolls up an event whose ``cost_usd`` the recorder left
NULL, with the same integer arithmetic as ``cost_of_tokens`` (done in SQL for
speed; ``event_cost`` is the same rule in Python, and property tests keep the two equal). A
cost is frozen once rolled up: a price row added later does not change rolled-up events (a
rebuild re-prices them).

Without a price an event costs 0. For the built-in priced providers (``PRICED_PROVIDERS``:
anthropic, bedrock, openai, gemini) that is a gap: such events are "unpriced", counted by the
rollup and listed in the dashboard, the admin and the API (usage.selectors.usage_unpriced).
Ollama and generic OpenAI-compatible servers (any other provider name) run on the operator's
own hardware: they cost 0 by default and are not unpriced, until an admin adds a Price row for
that provider; from then on its models without a row are unpriced like any other
(``free_by_default``).
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

# Providers that bill by the token: usage without a price is a gap to report. Every other
# provider (ollama, generic servers) costs 0 until an admin prices it.
PRICED_PROVIDERS: frozenset[str] = frozenset({"anthropic", "bedrock", "openai", "gemini"})

_TAG_SUFFIX = re.compile(r"\[[^\]]*\]$")
# A Bedrock model id or inference profile: [region.]vendor.model[-vN[:M]] (ARNs end in one).
_BEDROCK_PREFIX = re.compile(
    r"^(?:(?:us|eu|apac|global|jp|au|ca|us-gov)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer)\."
)
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_DATE_SUFFIX = re.compile(r"(?:-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8})$")
_GEMINI_VERSION = re.compile(r"^(gemini-.+)-\d{3}$")

# (provider, upstream model, requested model): what an event's price depends on.
PriceKey = tuple[str, str, str]


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
    """The price of events of (provider, upstream model, requested model) from ``valid_from``
    until ``valid_until``; ``priced_as`` is the name of the Price rows it comes from."""

    provider: str
    model: str  # the requested model
    valid_from: datetime
    valid_until: datetime | None
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal
    cache_write_per_mtok: Decimal
    upstream_model: str = ""
    priced_as: str = ""

    @property
    def key(self) -> PriceKey:
        return (self.provider, self.upstream_model, self.model)

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
    """Names to look a price up under, most specific first (the name itself always first)."""
    names = [model]

    def add(candidate: str) -> None:
        if candidate and candidate not in names:
            names.append(candidate)

    base = _TAG_SUFFIX.sub("", model).strip()
    add(base)
    if base.startswith(("arn:", "models/")):
        base = base.rsplit("/", 1)[-1]
        add(base)
    if _BEDROCK_PREFIX.match(base):
        base = _BEDROCK_VERSION.sub("", _BEDROCK_PREFIX.sub("", base))
        add(base)
    undated = _DATE_SUFFIX.sub("", base)
    add(undated)
    add(base.removesuffix("-latest"))
    add(_GEMINI_VERSION.sub(r"\1", undated))
    return names


def without_provider_prefix(model: str) -> str:
    """``openai/gpt-4.1`` → ``gpt-4.1``: the client's ``provider/`` routing prefix removed."""
    return model.split("/", 1)[1] if "/" in model else model


def price_names(*, upstream_model: str, requested_model: str) -> list[str]:
    """The names an event's price is looked up under, in order: the upstream model's
    candidates, then the requested model's without its provider prefix."""
    names: list[str] = []
    for model in (upstream_model, without_provider_prefix(requested_model)):
        if not model:
            continue
        for name in model_name_candidates(model):
            if name not in names:
                names.append(name)
    return names


def price_windows(keys: Iterable[PriceKey]) -> list[PriceWindow]:
    """The price windows of each (provider, upstream model, requested model); keys without a
    price have none. One query."""
    wanted = set(keys)
    if not wanted:
        return []
    names_of = {key: price_names(upstream_model=key[1], requested_model=key[2]) for key in wanted}
    rows: dict[tuple[str, str], list[Price]] = defaultdict(list)
    for price in Price.objects.filter(
        provider__in={provider for provider, _, _ in wanted},
        model__in={name for names in names_of.values() for name in names},
    ).order_by("valid_from"):
        rows[(price.provider, price.model)].append(price)

    windows: list[PriceWindow] = []
    for key in sorted(wanted):
        provider, upstream_model, requested_model = key
        found = next(
            (rows[(provider, n)] for n in names_of[key] if (provider, n) in rows),
            [],
        )
        for index, price in enumerate(found):
            following = found[index + 1] if index + 1 < len(found) else None
            windows.append(
                PriceWindow(
                    provider=provider,
                    model=requested_model,
                    upstream_model=upstream_model,
                    priced_as=price.model,
                    valid_from=price.valid_from,
                    valid_until=following.valid_from if following else None,
                    input_per_mtok=price.input_per_mtok,
                    output_per_mtok=price.output_per_mtok,
                    cache_read_per_mtok=price.cache_read_per_mtok,
                    cache_write_per_mtok=price.cache_write_per_mtok,
                )
            )
    return windows


def price_at(
    *, provider: str, model: str, at: datetime, upstream_model: str = ""
) -> PriceWindow | None:
    """The price of an event of ``provider`` for requested ``model`` (answered by
    ``upstream_model``) valid at ``at``, if any."""
    windows = price_windows([(provider, upstream_model, model)])
    return next((w for w in windows if w.covers(at)), None)


def providers_with_prices() -> set[str]:
    """Providers that have at least one Price row. One query."""
    return set(Price.objects.order_by().values_list("provider", flat=True).distinct())


def free_by_default(provider: str, priced: set[str]) -> bool:
    """Whether usage of ``provider`` without a price costs 0 by design rather than by a gap:
    a local or generic server (not one of PRICED_PROVIDERS) with no Price row at all
    (``priced`` is ``providers_with_prices()``)."""
    return provider not in PRICED_PROVIDERS and provider not in priced


def event_cost(
    *,
    provider: str,
    model: str,
    occurred_at: datetime,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    upstream_model: str = "",
) -> Decimal | None:
    """The cost of one event (``model`` is the requested model), 0 for a provider that is free
    by default, or None when it is unpriced (the rollup then uses 0 and reports it)."""
    price = price_at(provider=provider, model=model, upstream_model=upstream_model, at=occurred_at)
    if price is None:
        return Decimal(0) if free_by_default(provider, providers_with_prices()) else None
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
        "usage: no price for %s/%s; %d event(s) counted at cost 0 (add a Price row; the "
        "dashboard lists unpriced usage)",
        provider,
        model or "<empty>",
        count,
    )
