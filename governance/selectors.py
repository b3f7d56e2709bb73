"""Reads of governance data: the policy of an access key (the proxy's cold path), what a budget
period has spent according to the usage tables, and the lists the API and admin show."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum

from governance.models import Budget, RateLimit, Scope
from governance.policy import USD_UNITS, BudgetRule, LimitRule, Policy
from usage.models import TOKEN_COUNT_FIELDS, Bucket, PendingUsageEvent, UsageAggregate, UsageEvent
from usage.pricing import cost_of_tokens, price_windows


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
    ).only(
        "provider",
        "requested_model",
        "upstream_model",
        "occurred_at",
        "cost_usd",
        *TOKEN_COUNT_FIELDS,
    )
    pending_cost, pending_tokens = _events_spent(pending)
    return int((cost + pending_cost) * USD_UNITS), tokens + pending_tokens


def _events_spent(events: QuerySet[UsageEvent]) -> tuple[Decimal, int]:
    """Cost and tokens of events, priced as the rollup will price them (one price query)."""
    rows = list(events)
    windows = price_windows(
        {(row.provider, row.upstream_model, row.requested_model) for row in rows}
    )
    cost = Decimal(0)
    tokens = 0
    for row in rows:
        tokens += sum(int(getattr(row, name)) for name in TOKEN_COUNT_FIELDS)
        if row.cost_usd is not None:
            cost += row.cost_usd
            continue
        price = next(
            (
                window
                for window in windows
                if (window.provider, window.upstream_model, window.model)
                == (row.provider, row.upstream_model, row.requested_model)
                and window.covers(row.occurred_at)
            ),
            None,
        )
        if price is not None:
            cost += cost_of_tokens(
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                cache_read_tokens=row.cache_read_tokens,
                cache_write_tokens=row.cache_write_tokens,
                price=price,
            )
    return cost, tokens


def budgets_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("user", "access_key").order_by("id")


def rate_limits_list() -> QuerySet[RateLimit]:
    return RateLimit.objects.select_related("user", "access_key").order_by("id")
