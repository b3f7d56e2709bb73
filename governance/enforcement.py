"""What the proxy asks before and after a request: rate limits, allowed models and budgets.

``admit`` runs before the plan's first leg: it finds the key's policy (cached per process, no
database query when warm), estimates the request (governance input tokens locally, output at
most ``max_tokens``), and decides every applicable counter in one ``counters`` call — one Redis
round trip. It answers with an ``Admission`` (headers to add, and what to settle), a refusal
already rendered in the client's format (429 with ``retry-after``; 403 for a model the key may
not use), or None when no rule applies.

``Admission.settle`` runs when the request's usage event is recorded (ProxyContext.record): it
corrects the tokens-per-minute window by the actual tokens, frees the concurrency slots, and
turns budget reservations into actual spend — off the response path, in a task.

The policy cache follows the key cache: an entry is valid while the proxy holds the very same
KeyMetadata object it was loaded for. Every governance write invalidates the key cache (the one
invalidation path of accounts.keycache), so a changed budget or limit applies in every process
within about a second, and at the latest when the key's cache entry expires.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from accounts.keycache import KeyMetadata
from governance import selectors
from governance.counters import (
    BUDGET,
    CONCURRENCY,
    KEY_PREFIX,
    WINDOW,
    Check,
    Outcome,
    Settlement,
    counters,
)
from governance.periods import minute_window, period_bounds, reset_duration
from governance.policy import NO_POLICY, USD_UNITS, BudgetRule, LimitRule, Policy
from proxy.context import json_response
from proxy.translation.estimate import estimate_input_tokens, estimate_text_tokens
from proxy.translation.sse import Usage
from usage.pricing import (
    PICO_PER_COST_UNIT,
    PriceKey,
    PriceWindow,
    price_micros,
    price_windows,
)

if TYPE_CHECKING:
    from proxy.planning import Plan
    from proxy.providers.base import Call

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_POLICIES = 50_000
_RETRY_FAILED_LOAD_SECONDS = 5.0
_PRICE_TTL_SECONDS = 300.0


def _closing(func: Callable[..., T]) -> Callable[..., T]:
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    return run


async def _in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A database read off the event loop (cold path only)."""
    return await sync_to_async(_closing(func), thread_sensitive=False)(*args, **kwargs)


# --- Caches -------------------------------------------------------------------------------------


class PolicyCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[int, tuple[KeyMetadata | None, float, Policy]] = OrderedDict()
        self._lock = threading.Lock()
        # Loads under way: the requests of a key that arrive together (after an invalidation, a
        # burst on a new key) share one database read.
        self._loading: dict[int, tuple[KeyMetadata, asyncio.Task[Policy]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self._loading.clear()

    async def get(self, metadata: KeyMetadata) -> Policy:
        with self._lock:
            entry = self._entries.get(metadata.key_id)
        if entry is not None and entry[0] is metadata:
            return entry[2]
        if entry is not None and entry[0] is None and entry[1] > time.monotonic():
            return entry[2]  # a failed load: the stale policy until the retry time
        loading = self._loading.get(metadata.key_id)
        if (
            loading is None
            or loading[0] is not metadata
            or loading[1].get_loop() is not asyncio.get_running_loop()
        ):
            task = asyncio.get_running_loop().create_task(self._load(metadata, entry))
            loading = self._loading[metadata.key_id] = (metadata, task)
            task.add_done_callback(lambda _: self._forget_load(metadata.key_id, task))
        return await asyncio.shield(loading[1])

    def _forget_load(self, key_id: int, task: asyncio.Task[Policy]) -> None:
        loading = self._loading.get(key_id)
        if loading is not None and loading[1] is task:
            del self._loading[key_id]

    async def _load(
        self, metadata: KeyMetadata, entry: tuple[KeyMetadata | None, float, Policy] | None
    ) -> Policy:
        try:
            policy = await _in_thread(
                selectors.policy_load, access_key_id=metadata.key_id, user_id=metadata.user_id
            )
        except Exception as exc:
            logger.warning("governance: cannot load the policy of key %s: %s", metadata.prefix, exc)
            stale = entry[2] if entry is not None else NO_POLICY
            retry_at = time.monotonic() + _RETRY_FAILED_LOAD_SECONDS
            self._put(metadata.key_id, (None, retry_at, stale))
            return stale
        self._put(metadata.key_id, (metadata, 0.0, policy))
        return policy

    def _put(self, key_id: int, entry: tuple[KeyMetadata | None, float, Policy]) -> None:
        with self._lock:
            self._entries[key_id] = entry
            self._entries.move_to_end(key_id)
            while len(self._entries) > _MAX_POLICIES:
                self._entries.popitem(last=False)


class PriceCache:
    """Prices of (provider, upstream model, requested model) — usage.pricing's key — for
    reservations and settlements, per process, for a few minutes."""

    def __init__(self) -> None:
        self._entries: dict[PriceKey, tuple[float, list[PriceWindow]]] = {}

    def clear(self) -> None:
        self._entries.clear()

    def cached(self, key: PriceKey, at: datetime) -> PriceWindow | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        return next((window for window in entry[1] if window.covers(at)), None)

    async def load(self, keys: set[PriceKey]) -> None:
        now = time.monotonic()
        missing = {key for key in keys if self._entries.get(key, (0.0, []))[0] <= now}
        if not missing:
            return
        try:
            windows = await _in_thread(price_windows, missing)
        except Exception as exc:
            logger.warning("governance: cannot load prices: %s", exc)
            return
        for key in missing:
            self._entries[key] = (
                now + _PRICE_TTL_SECONDS,
                [w for w in windows if (w.provider, w.upstream_model, w.model) == key],
            )


policies = PolicyCache()
prices = PriceCache()


# --- Estimates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    max_output_tokens: int

    @property
    def max_tokens(self) -> int:
        return self.input_tokens + self.max_output_tokens


def estimate_call(call: Call) -> Estimate:
    """The request's estimated input tokens and the most output it may produce.

    Made once per request and kept on its context: the routing rules (a token range) and the
    admission both ask, and estimating is most of what the checks cost."""
    cached = call.context.estimate
    if cached is not None and cached[0] is call.data:
        known: Estimate = cached[1]
        return known
    estimate = _estimate(call)
    call.context.estimate = (call.data, estimate)
    return estimate


def _estimate(call: Call) -> Estimate:
    data = call.data
    if not call.surface.streams:  # embeddings: no hub form, no output
        items = data.get("input")
        texts = items if isinstance(items, list) else [items]
        tokens = 0
        for item in texts:
            if isinstance(item, str):
                tokens += estimate_text_tokens(item)
            elif isinstance(item, list):
                tokens += len(item)
        return Estimate(max(tokens, 1), 0)
    hub = call.hub_request()
    max_output = hub.get("max_tokens")
    if not isinstance(max_output, int) or isinstance(max_output, bool) or max_output < 0:
        max_output = settings.GATEWAY_DEFAULT_MAX_TOKENS
    return Estimate(estimate_input_tokens(hub), int(max_output))


def _micros(price: PriceWindow) -> tuple[int, int, int, int]:
    """The window's input, output, cache read and cache write prices in micro-USD per million
    tokens (usage.pricing.price_micros), converted once per window rather than per request."""
    entry = _price_micros.get(id(price))
    if entry is None or entry[0] is not price:
        if len(_price_micros) >= _MAX_PRICE_MICROS:
            _price_micros.clear()
        entry = _price_micros[id(price)] = (
            price,
            (
                price_micros(price.input_per_mtok),
                price_micros(price.output_per_mtok),
                price_micros(price.cache_read_per_mtok),
                price_micros(price.cache_write_per_mtok),
            ),
        )
    return entry[1]


# id(window) -> (window, its prices in micros); the window is kept, so its id is not reused.
_price_micros: dict[int, tuple[PriceWindow, tuple[int, int, int, int]]] = {}
_MAX_PRICE_MICROS = 10_000


def _units(picousd: int) -> int:
    """usage.pricing.cost_units's rounding: half up to 1e-8 USD."""
    return (picousd + PICO_PER_COST_UNIT // 2) // PICO_PER_COST_UNIT


def reservation_units(estimate: Estimate, price: PriceWindow | None) -> int:
    """The most the request can cost, in 1e-8 USD: input at the dearer of the input and cache
    write prices (a cache write bills input tokens at its own price), output at ``max_tokens``."""
    if price is None:
        return 0
    input_micros, output_micros, _, cache_write_micros = _micros(price)
    return _units(
        estimate.input_tokens * max(input_micros, cache_write_micros)
        + estimate.max_output_tokens * output_micros
    )


def usage_tokens(usage: Usage) -> int:
    return (
        usage.input_tokens
        + usage.output_tokens
        + usage.cache_read_input_tokens
        + usage.cache_creation_input_tokens
    )


def usage_units(usage: Usage, price: PriceWindow | None) -> int:
    """What the usage costs (usage.pricing.cost_units), in 1e-8 USD."""
    if price is None:
        return 0
    input_micros, output_micros, cache_read_micros, cache_write_micros = _micros(price)
    return _units(
        usage.input_tokens * input_micros
        + usage.output_tokens * output_micros
        + usage.cache_read_input_tokens * cache_read_micros
        + usage.cache_creation_input_tokens * cache_write_micros
    )


# --- Keys ---------------------------------------------------------------------------------------


def budget_key(rule: BudgetRule, unit: str, period_start: datetime) -> str:
    return f"{KEY_PREFIX}budget:{rule.budget_id}:{unit}:{int(period_start.timestamp())}"


def concurrency_key(rule: LimitRule) -> str:
    return f"{KEY_PREFIX}conc:{rule.scope}:{rule.target_id}"


def window_key(kind: str, rule: LimitRule, window_start_ms: int) -> str:
    return f"{KEY_PREFIX}{kind}:{rule.scope}:{rule.target_id}:{window_start_ms}"


def budget_zone() -> ZoneInfo:
    return ZoneInfo(settings.GATEWAY_BUDGET_TIME_ZONE)


@dataclass(frozen=True, slots=True)
class _Period:
    """A budget's current calendar period and its counters' keys, computed once per period."""

    start_ms: int
    end_ms: int
    end: datetime
    usd_key: str
    tokens_key: str


# (budget id, period, time zone) -> its period; replaced when a request falls outside it.
_periods: dict[tuple[int, str, str], _Period] = {}
_MAX_PERIODS = 10_000


def _period(rule: BudgetRule, now: datetime, now_ms: int) -> _Period:
    zone_name = settings.GATEWAY_BUDGET_TIME_ZONE
    cache_key = (rule.budget_id, rule.period, zone_name)
    period = _periods.get(cache_key)
    if period is not None and period.start_ms <= now_ms < period.end_ms:
        return period
    start, end = period_bounds(rule.period, now, ZoneInfo(zone_name))
    period = _Period(
        start_ms=int(start.timestamp() * 1000),
        end_ms=int(end.timestamp() * 1000),
        end=end,
        usd_key=budget_key(rule, "usd", start),
        tokens_key=budget_key(rule, "tokens", start),
    )
    if len(_periods) >= _MAX_PERIODS:
        _periods.clear()
    _periods[cache_key] = period
    return period


# --- Admission ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One check with what it means, to word refusals and headers."""

    check: Check
    what: str  # requests, tokens, concurrent, budget_usd, budget_tokens
    rule: LimitRule | BudgetRule
    period_end: datetime | None = None


@dataclass
class Admission:
    """An admitted request: headers for its response and what to settle when it is recorded."""

    headers: dict[str, str]
    settlements: list[Settlement]
    shared: bool
    estimate: Estimate | None
    # The price key of each provider of the plan, for the settlement (the first leg's first).
    price_keys: dict[str, PriceKey]
    first_provider: str
    settled: bool = False

    def apply(self, response: Any) -> None:
        for name, value in self.headers.items():
            response[name] = value

    def settle(self, provider: str, status: int, usage: Usage) -> None:
        """Correct the counters with what the request used (idempotent)."""
        if self.settled:
            return
        self.settled = True
        actual_tokens = usage_tokens(usage)
        now = datetime.now(UTC)
        key = self.price_keys.get(provider) or self.price_keys[self.first_provider]
        price = prices.cached(key, now)
        actual_units = usage_units(usage, price)
        final: list[Settlement] = []
        for item in self.settlements:
            if item.kind == BUDGET:
                actual = actual_units if ":usd:" in item.key else actual_tokens
                final.append(Settlement(BUDGET, item.key, item.member, item.reserved, actual))
            elif item.kind == WINDOW:
                final.append(Settlement(WINDOW, item.key, "", item.reserved, actual_tokens))
            else:
                final.append(item)
        settle_soon(final, shared=self.shared)

    def release(self) -> None:
        """The request ended without a usage record: nothing was spent."""
        self.settle(self.first_provider, 0, Usage())


def settle_soon(settlements: list[Settlement], *, shared: bool) -> None:
    """Send settlements off the caller's path (with the process's next admission, or on their
    own shortly: ``Counters.settle_later``), or at once outside any loop."""
    counters.settle_later(settlements, shared=shared)


async def settlements_drain() -> None:
    """Send the queued settlements and wait for them (tests; shutdown)."""
    await counters.drain()


def _model_names(requested_model: str, plan: Plan) -> tuple[str, ...]:
    leg = plan.legs[0]
    return (requested_model, f"{leg.provider}/{leg.model}", leg.model)


def _limit_items(
    policy: Policy, estimate: Callable[[], Estimate], now_ms: int, member: str, slot_expiry: int
) -> list[_Item]:
    items: list[_Item] = []
    window_start, window_end = minute_window(now_ms)
    for rule in policy.limits:
        if rule.requests_per_minute is not None:
            key = window_key("rpm", rule, window_start)
            items.append(
                _Item(Check(WINDOW, key, rule.requests_per_minute, 1, window_end), "requests", rule)
            )
        if rule.tokens_per_minute is not None:
            key = window_key("tpm", rule, window_start)
            amount = estimate().input_tokens
            items.append(
                _Item(
                    Check(WINDOW, key, rule.tokens_per_minute, amount, window_end), "tokens", rule
                )
            )
        if rule.concurrent_requests is not None:
            check = Check(
                CONCURRENCY, concurrency_key(rule), rule.concurrent_requests, 1, slot_expiry, member
            )
            items.append(_Item(check, "concurrent", rule))
    return items


def _budget_items(
    budgets: list[BudgetRule],
    estimate: Estimate,
    price: PriceWindow | None,
    now: datetime,
    now_ms: int,
    member: str,
    slot_expiry: int,
) -> list[_Item]:
    items: list[_Item] = []
    usd_amount: int | None = None
    for rule in budgets:
        period = _period(rule, now, now_ms)
        if rule.limit_usd_units is not None:
            if usd_amount is None:
                usd_amount = reservation_units(estimate, price)
            check = Check(
                BUDGET,
                period.usd_key,
                rule.limit_usd_units,
                usd_amount,
                slot_expiry,
                member,
                period_end_ms=period.end_ms,
            )
            items.append(_Item(check, "budget_usd", rule, period_end=period.end))
        if rule.limit_tokens is not None:
            check = Check(
                BUDGET,
                period.tokens_key,
                rule.limit_tokens,
                estimate.max_tokens,
                slot_expiry,
                member,
                period_end_ms=period.end_ms,
            )
            items.append(_Item(check, "budget_tokens", rule, period_end=period.end))
    return items


# Reads of a budget period's spend under way: when a period starts, or Redis forgot it, every
# request in flight needs the seed at once, and they share one read.
_spent_reads: dict[tuple[int, datetime], asyncio.Task[tuple[int, int]]] = {}


async def _spent(rule: BudgetRule, start: datetime, end: datetime) -> tuple[int, int]:
    key = (rule.budget_id, start)
    loop = asyncio.get_running_loop()
    task = _spent_reads.get(key)
    if task is None or task.get_loop() is not loop:
        read = loop.create_task(_in_thread(selectors.budget_spent, rule, start=start, end=end))
        _spent_reads[key] = read

        def forget(_: object) -> None:
            if _spent_reads.get(key) is read:
                del _spent_reads[key]

        read.add_done_callback(forget)
        task = read
    return await asyncio.shield(task)


async def _seeded(items: list[_Item], indexes: list[int], now: datetime) -> None:
    """Give the budget checks at ``indexes`` their spend so far, from the usage tables."""
    zone = budget_zone()
    spent_by_budget: dict[int, tuple[int, int]] = {}
    for index in indexes:
        item = items[index]
        rule = item.rule
        assert isinstance(rule, BudgetRule)
        if rule.budget_id not in spent_by_budget:
            start, end = period_bounds(rule.period, now, zone)
            spent_by_budget[rule.budget_id] = await _spent(rule, start, end)
        usd, tokens = spent_by_budget[rule.budget_id]
        seed = usd if item.what == "budget_usd" else tokens
        check = item.check
        item.check = Check(
            check.kind,
            check.key,
            check.limit,
            check.amount,
            check.expire_ms,
            check.member,
            check.period_end_ms,
            seed,
        )


async def admit(call: Call, plan: Plan) -> Admission | HttpResponse | None:
    """Check the request against its key's and user's limits and budgets (see module doc)."""
    context = call.context
    policy = await policies.get(context.metadata)
    if policy.empty:
        return None
    names = _model_names(context.requested_model, plan)
    for rule in policy.limits:
        if not rule.allows(names):
            return call.surface.error_response(
                403,
                "permission_error",
                f"The model {context.requested_model!r} is not allowed for this {rule.subject}. "
                f"Allowed: {', '.join(rule.allowed_models)}.",
                param="model",
                headers={"x-gateway-request-id": context.request_id},
            )
    first_provider = plan.legs[0].provider
    budgets = [rule for rule in policy.budgets if rule.applies_to(first_provider)]
    estimated: list[Estimate] = []

    def estimate() -> Estimate:
        if not estimated:
            estimated.append(estimate_call(call))
        return estimated[0]

    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    member = context.request_id
    slot_expiry = now_ms + int(settings.GATEWAY_GOVERNANCE_SLOT_SECONDS * 1000)
    items = _limit_items(policy, estimate, now_ms, member, slot_expiry)
    price: PriceWindow | None = None
    price_keys: dict[str, PriceKey] = {}
    for leg in reversed(plan.legs):
        price_keys[leg.provider] = (leg.provider, leg.model, context.requested_model)
    if budgets:
        if any(rule.limit_usd_units is not None for rule in budgets):
            await prices.load(set(price_keys.values()))
            price = prices.cached(price_keys[first_provider], now)
        items += _budget_items(budgets, estimate(), price, now, now_ms, member, slot_expiry)
    if not items:
        return None
    outcome, shared = await counters.admit([item.check for item in items], now_ms)
    for _ in range(3):
        if not outcome.needs_seed:
            break
        await _seeded(items, outcome.needs_seed, now)
        outcome, shared = await counters.admit([item.check for item in items], now_ms)
    headers = _rate_headers(items, outcome, now_ms)
    if not outcome.admitted:
        return _refusal(call, items, outcome, headers, now, now_ms)
    settlements = [
        Settlement(item.check.kind, item.check.key, item.check.member, item.check.amount)
        for item in items
        if item.what != "requests"
    ]
    return Admission(
        headers=headers,
        settlements=settlements,
        shared=shared,
        estimate=estimated[0] if estimated else None,
        price_keys=price_keys,
        first_provider=first_provider,
    )


def _rate_headers(items: list[_Item], outcome: Outcome, now_ms: int) -> dict[str, str]:
    """``x-ratelimit-*`` of the tightest requests and tokens limits (OpenAI's names)."""
    headers: dict[str, str] = {}
    _, window_end = minute_window(now_ms)
    reset = reset_duration((window_end - now_ms) / 1000)
    for what in ("requests", "tokens"):
        best: tuple[int, int] | None = None
        for index, item in enumerate(items):
            if item.what != what or index >= len(outcome.used):
                continue
            remaining = max(item.check.limit - outcome.used[index], 0)
            if best is None or remaining < best[1]:
                best = (item.check.limit, remaining)
        if best is not None:
            headers[f"x-ratelimit-limit-{what}"] = str(best[0])
            headers[f"x-ratelimit-remaining-{what}"] = str(best[1])
            headers[f"x-ratelimit-reset-{what}"] = reset
    return headers


def _usd(units: int) -> str:
    return f"${units / USD_UNITS:,.2f}"


def _refusal(
    call: Call,
    items: list[_Item],
    outcome: Outcome,
    headers: dict[str, str],
    now: datetime,
    now_ms: int,
) -> HttpResponse:
    assert outcome.refused is not None
    item = items[outcome.refused]
    used = outcome.used[outcome.refused]
    rule = item.rule
    headers = {**headers, "x-gateway-request-id": call.context.request_id}
    if isinstance(rule, BudgetRule):
        assert item.period_end is not None
        wait = (item.period_end - now).total_seconds()
        amount = (
            f"{_usd(used)} of {_usd(item.check.limit)}"
            if item.what == "budget_usd"
            else f"{used:,} of {item.check.limit:,} tokens"
        )
        message = (
            f"Budget {rule.label!r} of this {rule.subject} is used up for this {rule.period}: "
            f"{amount}. It resets at {item.period_end.isoformat()}."
        )
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["x-gateway-budget"] = str(rule.budget_id)
        if call.surface.wire == "openai":
            body = {
                "error": {
                    "message": message,
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            }
            return json_response(body, status=429, headers=headers)
        return call.surface.error_response(429, "rate_limit_error", message, headers=headers)
    assert isinstance(rule, LimitRule)
    if item.what == "concurrent":
        message = (
            f"Too many concurrent requests for this {rule.subject}: "
            f"{rule.concurrent_requests} at most."
        )
        headers["retry-after"] = "1"
    else:
        _, window_end = minute_window(now_ms)
        wait = max(1, math.ceil((window_end - now_ms) / 1000))
        unit = "requests" if item.what == "requests" else "tokens"
        message = (
            f"Rate limit of this {rule.subject} reached: {item.check.limit:,} {unit} per minute "
            f"({used:,} used). Retry in {wait}s."
        )
        headers["retry-after"] = str(wait)
    return call.surface.error_response(429, "rate_limit_error", message, headers=headers)


def reset_caches() -> None:
    """Forget cached policies and prices (tests)."""
    policies.clear()
    prices.clear()
    _periods.clear()
    _price_micros.clear()
    _spent_reads.clear()
