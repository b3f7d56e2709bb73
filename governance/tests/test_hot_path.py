"""The warm path of the checks: every rule kind at once costs one counters call (one Redis round
trip when Redis is configured: one script) and no database query. Its CPU time is measured by
``bench/governance_micro.py``, with this module's request and rules."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from governance.counters import counters
from governance.enforcement import Admission, admit, policies, prices
from governance.policy import BudgetRule, LimitRule, Policy
from proxy.context import ProxyContext, new_request_id
from proxy.planning import Leg, Plan
from proxy.providers.base import Call
from proxy.surfaces import ANTHROPIC_MESSAGES
from proxy.testing.metadata import key_metadata
from proxy.translation.sse import Usage
from usage.pricing import PriceWindow

MODEL = "claude-sonnet-4-6"
# A Claude Code-sized request: a long system prompt, 40 turns, 15 tools.
BODY: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 32_000,
    "system": [{"type": "text", "text": "You are a coding assistant. " * 400}],
    "messages": [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": "def f(x):\n    return x * 2\n" * 40}],
        }
        for i in range(40)
    ],
    "tools": [
        {
            "name": f"tool_{i}",
            "description": "Reads a file. " * 30,
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
        for i in range(15)
    ],
}
METADATA = key_metadata(key_id=7, user_id=3, prefix="gw_perfperf")
POLICY = Policy(
    limits=(
        LimitRule(
            "access_key",
            7,
            requests_per_minute=10**9,
            tokens_per_minute=10**15,
            concurrent_requests=10**6,
        ),
        LimitRule("user", 3, requests_per_minute=10**9, allowed_models=("claude-*",)),
    ),
    budgets=(
        BudgetRule(1, "team", "user", 3, "month", limit_usd_units=10**15, limit_tokens=10**15),
        BudgetRule(2, "all", "global", 0, "day", limit_tokens=10**15),
    ),
)


def _call() -> tuple[Call, Plan]:
    context = ProxyContext(metadata=METADATA, request_id=new_request_id(), requested_model=MODEL)
    call = Call(
        surface=ANTHROPIC_MESSAGES,
        context=context,
        data=BODY,
        body=json.dumps(BODY).encode(),
        headers={},
    )
    return call, Plan(legs=[Leg("anthropic", "anthropic", MODEL)])


def _warm() -> None:
    policies._put(METADATA.key_id, (METADATA, 0.0, POLICY))
    key = ("anthropic", MODEL, MODEL)
    window = PriceWindow(
        provider="anthropic",
        model=MODEL,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        valid_until=None,
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(15),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_per_mtok=Decimal("3.75"),
        upstream_model=MODEL,
    )
    prices._entries[key] = (time.monotonic() + 3600, [window])


async def _one(prepared: tuple[Call, Plan] | None = None) -> Admission:
    call, plan = prepared or _call()
    admission = await admit(call, plan)
    assert isinstance(admission, Admission)
    admission.settle("anthropic", 200, Usage(input_tokens=10, output_tokens=5))
    return admission


@pytest.mark.django_db(transaction=True)
def test_every_rule_kind_costs_one_counters_call_and_no_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from governance import enforcement, selectors

    calls: list[int] = []
    reads: list[str] = []
    original = counters.admit

    async def counting(checks: list[Any], now_ms: int) -> Any:
        calls.append(len(checks))
        return await original(checks, now_ms)

    def reading(name: str, real: Any) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            reads.append(name)
            return real(*args, **kwargs)

        return read

    monkeypatch.setattr(counters, "admit", counting)
    monkeypatch.setattr(selectors, "policy_load", reading("policy", selectors.policy_load))
    monkeypatch.setattr(selectors, "budget_spent", reading("spent", selectors.budget_spent))
    monkeypatch.setattr(enforcement, "price_windows", reading("prices", enforcement.price_windows))

    async def run() -> None:
        _warm()
        await _one()  # seeds the budget periods (cold: the usage tables are read)
        assert reads == ["spent", "spent"]
        calls.clear()
        reads.clear()
        admission = await _one()
        assert reads == []  # nothing read from the database when warm
        assert calls == [7]  # rpm ×2, tpm, concurrency, usd, tokens ×2: one call
        assert admission.headers["x-ratelimit-limit-requests"] == str(10**9)
        from governance.enforcement import settlements_drain

        await settlements_drain()

    asyncio.run(run())


@pytest.mark.django_db(transaction=True)
def test_requests_arriving_together_share_one_policy_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from governance import selectors

    loads: list[int] = []

    def slow_load(*, access_key_id: int, user_id: int) -> Policy:
        loads.append(access_key_id)
        time.sleep(0.2)
        return POLICY

    monkeypatch.setattr(selectors, "policy_load", slow_load)
    policies.clear()

    async def run() -> list[Policy]:
        return await asyncio.gather(*(policies.get(METADATA) for _ in range(20)))

    assert asyncio.run(run()) == [POLICY] * 20
    assert loads == [7]
    # A new metadata object (the key cache reloaded the key) loads again, once.
    fresh = dataclasses.replace(METADATA)
    asyncio.run(policies.get(fresh))
    asyncio.run(policies.get(fresh))
    assert loads == [7, 7]


@pytest.mark.django_db(transaction=True)
def test_requests_needing_a_budget_seed_together_share_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new period, or Redis flushed: every admission in flight finds the budget unseeded."""
    from governance import selectors

    reads: list[int] = []

    def slow_spent(rule: BudgetRule, *, start: Any, end: Any) -> tuple[int, int]:
        reads.append(rule.budget_id)
        time.sleep(0.2)
        return 0, 0

    monkeypatch.setattr(selectors, "budget_spent", slow_spent)

    async def run() -> list[Admission]:
        _warm()
        return list(await asyncio.gather(*(_one() for _ in range(20))))

    admissions = asyncio.run(run())
    assert len(admissions) == 20
    assert sorted(reads) == [1, 2]  # one read per budget, not one per request
    counters.reset()  # Redis (or this process) forgets the periods: read once more each
    asyncio.run(run())
    assert sorted(reads) == [1, 1, 2, 2]


def test_a_request_is_estimated_once_for_the_rules_and_the_admission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from governance import enforcement
    from proxy.translation.estimate import estimate_input_tokens

    counted: list[int] = []

    def counting(request: dict[str, Any]) -> int:
        counted.append(1)
        return estimate_input_tokens(request)

    monkeypatch.setattr(enforcement, "estimate_input_tokens", counting)
    call, _ = _call()
    first = enforcement.estimate_call(call)
    assert enforcement.estimate_call(call) is first
    assert counted == [1]
    assert first == enforcement.Estimate(estimate_input_tokens(BODY), 32_000)
    # Another body on the same context (never in the proxy: one call per request) is estimated
    # afresh, not answered from the cache.
    other = Call(
        surface=call.surface,
        context=call.context,
        data={**BODY, "max_tokens": 5},
        body=b"",
        headers={},
    )
    assert enforcement.estimate_call(other).max_output_tokens == 5
    assert counted == [1, 1]


def test_budget_periods_are_computed_once_per_period(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from zoneinfo import ZoneInfo

    from governance import enforcement
    from governance.periods import period_bounds

    computed: list[str] = []

    def counting(period: str, moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
        computed.append(period)
        return period_bounds(period, moment, zone)

    monkeypatch.setattr(enforcement, "period_bounds", counting)
    settings.GATEWAY_BUDGET_TIME_ZONE = "Europe/Paris"
    rule = POLICY.budgets[1]  # daily
    end_of_day = datetime(2026, 3, 28, 22, 59, 59, tzinfo=UTC)  # 23:59:59 in Paris
    ms = int(end_of_day.timestamp() * 1000)
    period = enforcement._period(rule, end_of_day, ms)
    assert enforcement._period(rule, end_of_day, ms) is period
    assert computed == ["day"]
    start, end = period_bounds("day", end_of_day, ZoneInfo("Europe/Paris"))
    assert (period.start_ms, period.end) == (int(start.timestamp() * 1000), end)
    assert period.tokens_key == enforcement.budget_key(rule, "tokens", start)
    # The next second is the next day (a 23-hour one): computed again.
    next_day = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    following = enforcement._period(rule, next_day, period.end_ms)
    assert computed == ["day", "day"]
    assert following.start_ms == period.end_ms
    assert following.end_ms - following.start_ms == 23 * 3_600_000
    # Another time zone is another period.
    settings.GATEWAY_BUDGET_TIME_ZONE = "UTC"
    assert enforcement._period(rule, end_of_day, ms).start_ms != period.start_ms


def test_prices_in_micros_cost_what_usage_pricing_says() -> None:
    from governance import enforcement
    from usage.pricing import cost_units

    _warm()
    window = prices._entries[("anthropic", MODEL, MODEL)][1][0]
    usage = Usage(
        input_tokens=1234,
        output_tokens=567,
        cache_read_input_tokens=8901,
        cache_creation_input_tokens=23,
    )
    assert enforcement.usage_units(usage, window) == cost_units(
        input_tokens=1234,
        output_tokens=567,
        cache_read_tokens=8901,
        cache_write_tokens=23,
        price=window,
    )
    estimate = enforcement.Estimate(1001, 333)
    reserved = cost_units(
        input_tokens=1001,
        output_tokens=333,
        cache_read_tokens=0,
        cache_write_tokens=0,
        price=dataclasses.replace(window, input_per_mtok=window.cache_write_per_mtok),
    )
    assert enforcement.reservation_units(estimate, window) == reserved
    assert enforcement._micros(window) is enforcement._micros(window)
