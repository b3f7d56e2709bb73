"""The live state: circuits (this process's, and the shared ones in Redis), each enabled budget's
current period with its spend, reservations and what remains, requests in flight per
concurrency limit, and each provider credential's pool state (cooldown, why the gateway disabled
it, requests in flight, this minute's use)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema

from accounts.models import ProviderCredential
from governance import selectors
from governance.api.auth import AUTH
from governance.api.pools import MemberOut, member_state
from governance.counters import counters
from governance.enforcement import budget_key, budget_zone, concurrency_key
from governance.models import Budget, RateLimit
from governance.periods import period_bounds
from governance.policy import USD_UNITS
from proxy.circuit import circuits, shared_snapshot
from proxy.pools.state import credential_states

state_router = Router(auth=AUTH, tags=["state"])


class CircuitOut(Schema):
    name: str
    state: str
    open_for_seconds: float
    reason: str


class AmountOut(Schema):
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    remaining: Decimal


class BudgetStateOut(Schema):
    id: int
    label: str
    scope: str
    target_id: int
    provider: str
    period: str
    period_start: datetime
    period_end: datetime
    source: str  # "counters" (live) or "usage" (the usage tables: nothing counted yet)
    usd: AmountOut | None
    tokens: AmountOut | None


class InFlightOut(Schema):
    scope: str
    target_id: int
    limit: int
    in_flight: int


class CredentialStateOut(MemberOut):
    provider: str
    name: str
    scope: str


class StateOut(Schema):
    circuits: list[CircuitOut]
    shared_circuits: list[CircuitOut]
    budgets: list[BudgetStateOut]
    in_flight: list[InFlightOut]
    credentials: list[CredentialStateOut] = Field(
        description="Provider credentials: cooldowns, why the gateway disabled one, requests "
        "in flight and this minute's use (every process's with Redis, else this one's)."
    )


def _amount(limit: int, spent: int, reserved: int, scale: int) -> dict[str, Decimal]:
    def value(units: int) -> Decimal:
        return Decimal(units) / scale if scale != 1 else Decimal(units)

    return {
        "limit": value(limit),
        "spent": value(spent),
        "reserved": value(reserved),
        "remaining": value(max(limit - spent - reserved, 0)),
    }


def _budget_state(budget: Budget, now: datetime) -> dict[str, Any]:
    rule = selectors.budget_rule(budget)
    start, end = period_bounds(rule.period, now, budget_zone())
    entry: dict[str, Any] = {
        "id": rule.budget_id,
        "label": rule.label,
        "scope": rule.scope,
        "target_id": rule.target_id,
        "provider": rule.provider,
        "period": rule.period,
        "period_start": start,
        "period_end": end,
        "source": "counters",
        "usd": None,
        "tokens": None,
    }
    fallback: tuple[int, int] | None = None
    for unit, limit, scale in (
        ("usd", rule.limit_usd_units, USD_UNITS),
        ("tokens", rule.limit_tokens, 1),
    ):
        if limit is None:
            continue
        counted = counters.budget_state_sync(budget_key(rule, unit, start))
        if counted is None:
            if fallback is None:
                fallback = selectors.budget_spent(rule, start=start, end=end)
            entry["source"] = "usage"
            counted = (fallback[0] if unit == "usd" else fallback[1], 0)
        entry[unit] = _amount(limit, counted[0], counted[1], scale)
    return entry


@state_router.get("", response=StateOut, summary="Circuits, budget spend, requests in flight")
def state(request: HttpRequest) -> Any:
    now = datetime.now(UTC)
    now_ms = int(time.time() * 1000)
    in_flight = []
    for limit in RateLimit.objects.filter(enabled=True, concurrent_requests__isnull=False):
        rule = selectors.limit_rule(limit)
        in_flight.append(
            {
                "scope": rule.scope,
                "target_id": rule.target_id,
                "limit": rule.concurrent_requests,
                "in_flight": counters.in_flight_sync(concurrency_key(rule), now_ms),
            }
        )
    states = credential_states(time.time())
    credentials = [
        {
            **member_state(credential, states),
            "provider": credential.provider,
            "name": credential.name,
            "scope": credential.scope_description,
        }
        for credential in ProviderCredential.objects.select_related("user", "access_key").order_by(
            "id"
        )
    ]
    return {
        "credentials": credentials,
        "circuits": circuits.snapshot(),
        "shared_circuits": shared_snapshot(),
        "budgets": [
            _budget_state(budget, now) for budget in selectors.budgets_list().filter(enabled=True)
        ],
        "in_flight": in_flight,
    }
