"""Reads of governance data: the policy of an access key (the proxy's cold path), what a budget
period has spent according to the usage tables, and the lists the API and admin show."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Max, Min, Q, QuerySet, Sum

from governance.models import Budget, RateLimit, Scope
from governance.policy import USD_UNITS, BudgetRule, LimitRule, Policy
from usage.models import TOKEN_COUNT_FIELDS, Bucket, PendingUsageEvent, UsageAggregate, UsageEvent
from usage.pricing import PriceWindow, cost_of_tokens, price_windows


def limit_rule(limit: RateLimit) -> LimitRule:
    return LimitRule(
        scope=limit.scope,
        target_id=int(
            (limit.access_key_id if limit.scope == Scope.ACCESS_KEY else limit.user_id) or 0
        ),
        requests_per_minute=limit.requests_per_minute,
        tokens_per_minute=limit.tokens_per_minute,
        concurrent_requests=limit.concurrent_requests,
        allowed_models=tuple(str(name) for name in limit.allowed_models or ()),
    )


def budget_rule(budget: Budget) -> BudgetRule:
    target = {
        Scope.ACCESS_KEY: budget.access_key_id,
        Scope.USER: budget.user_id,
        Scope.GLOBAL: 0,
    }[Scope(budget.scope)]
    return BudgetRule(
        budget_id=budget.pk,
        label=budget.label,
        scope=budget.scope,
        target_id=int(target or 0),
        period=budget.period,
        provider=budget.provider,
        limit_usd_units=(
            None if budget.limit_usd is None else int(Decimal(budget.limit_usd) * USD_UNITS)
        ),
        limit_tokens=budget.limit_tokens,
    )


def policy_load(*, access_key_id: int, user_id: int) -> Policy:
    """Every enabled rule that applies to the key's requests. Two queries."""
    limits = RateLimit.objects.filter(
        Q(access_key_id=access_key_id) | Q(user_id=user_id), enabled=True
    ).order_by("scope", "id")
    budgets = Budget.objects.filter(
        Q(access_key_id=access_key_id) | Q(user_id=user_id) | Q(scope=Scope.GLOBAL),
        enabled=True,
    ).order_by("id")
    return Policy(
        limits=tuple(limit_rule(limit) for limit in limits),
        budgets=tuple(budget_rule(budget) for budget in budgets),
    )


def _rule_filter(rule: BudgetRule) -> Q:
    condition = Q()
    if rule.scope == Scope.ACCESS_KEY:
        condition &= Q(access_key_id=rule.target_id)
    elif rule.scope == Scope.USER:
        condition &= Q(user_id=rule.target_id)
    if rule.provider:
        condition &= Q(provider=rule.provider)
    return condition


def budget_spent(rule: BudgetRule, *, start: datetime, end: datetime) -> tuple[int, int]:
    """``(USD units, tokens)`` the usage tables hold for the rule in ``[start, end)``: the
    aggregates, plus events recorded but not rolled up yet. ``start`` must fall on a UTC hour
    (any whole-hour time zone) or a minute, which picks the buckets summed."""
    bucket = Bucket.HOUR if start.minute == 0 and start.second == 0 else Bucket.MINUTE
    token_sum = sum((Sum(name) for name in TOKEN_COUNT_FIELDS[1:]), Sum(TOKEN_COUNT_FIELDS[0]))
    totals = UsageAggregate.objects.filter(
        _rule_filter(rule), bucket=bucket, bucket_start__gte=start, bucket_start__lt=end
    ).aggregate(cost=Sum("cost_usd"), tokens=token_sum)
    cost = Decimal(totals["cost"] or 0)
    tokens = int(totals["tokens"] or 0)
    pending = UsageEvent.objects.filter(
        _rule_filter(rule),
        pk__in=PendingUsageEvent.objects.values("event_id"),
        occurred_at__gte=start,
        occurred_at__lt=end,
    )
    pending_cost, pending_tokens = _events_spent(pending)
    return int((cost + pending_cost) * USD_UNITS), tokens + pending_tokens


_TOKEN_SUMS = {name: Sum(name) for name in TOKEN_COUNT_FIELDS}


def _events_spent(events: QuerySet[UsageEvent]) -> tuple[Decimal, int]:
    """Cost and tokens of events, priced as the rollup will price them.

    Summed by the database, per model and price window, not row by row: the events not rolled
    up yet can be many (a roll-up worker that lags or is down), and every worker reads this
    when a budget period starts or Redis forgot it. Pricing a model's summed tokens differs
    from the rollup's per-event rounding by under 1e-8 USD per event."""
    cost = Decimal(0)
    tokens = 0
    priced = events.filter(cost_usd__isnull=False).aggregate(cost=Sum("cost_usd"), **_TOKEN_SUMS)
    cost += Decimal(priced["cost"] or 0)
    tokens += sum(int(priced[name] or 0) for name in TOKEN_COUNT_FIELDS)
    unpriced = events.filter(cost_usd__isnull=True)
    groups: list[Mapping[str, Any]] = list(
        unpriced.values("provider", "upstream_model", "requested_model").annotate(
            first=Min("occurred_at"), last=Max("occurred_at"), **_TOKEN_SUMS
        )
    )
    windows = price_windows(
        {(row["provider"], row["upstream_model"], row["requested_model"]) for row in groups}
    )
    for row in groups:
        tokens += sum(int(row[name] or 0) for name in TOKEN_COUNT_FIELDS)
        key = (row["provider"], row["upstream_model"], row["requested_model"])
        applying = [
            window
            for window in windows
            if window.key == key
            and window.valid_from <= row["last"]
            and (window.valid_until is None or row["first"] < window.valid_until)
        ]
        if len(applying) == 1 and applying[0].covers(row["first"]):
            cost += _cost_of_sums(row, applying[0])
            continue
        # The price changed within the period (rare): sum each window's part on its own.
        group = unpriced.filter(provider=key[0], upstream_model=key[1], requested_model=key[2])
        for window in applying:
            part = group.filter(occurred_at__gte=window.valid_from)
            if window.valid_until is not None:
                part = part.filter(occurred_at__lt=window.valid_until)
            cost += _cost_of_sums(part.aggregate(**_TOKEN_SUMS), window)
    return cost, tokens


def _cost_of_sums(sums: Mapping[str, Any], price: PriceWindow) -> Decimal:
    return cost_of_tokens(
        input_tokens=int(sums["input_tokens"] or 0),
        output_tokens=int(sums["output_tokens"] or 0),
        cache_read_tokens=int(sums["cache_read_tokens"] or 0),
        cache_write_tokens=int(sums["cache_write_tokens"] or 0),
        price=price,
    )


def budgets_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("user", "access_key").order_by("id")


def rate_limits_list() -> QuerySet[RateLimit]:
    return RateLimit.objects.select_related("user", "access_key").order_by("id")
