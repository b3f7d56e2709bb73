"""Writes of budgets and rate limits: validated, saved, and the proxy's cached policies
invalidated in every process after the commit (through accounts.keycache, the one invalidation
path the proxy listens to)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.keycache import invalidate_key_metadata
from governance.models import Budget, RateLimit

BUDGET_FIELDS = (
    "name",
    "scope",
    "user_id",
    "access_key_id",
    "provider",
    "period",
    "limit_usd",
    "limit_tokens",
    "enabled",
)
RATE_LIMIT_FIELDS = (
    "scope",
    "user_id",
    "access_key_id",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_requests",
    "allowed_models",
    "enabled",
)


def _invalidate_on_commit() -> None:
    transaction.on_commit(invalidate_key_metadata)


def _assign(
    rule: Budget | RateLimit, allowed: tuple[str, ...], values: dict[str, Any]
) -> list[str]:
    unknown = set(values) - set(allowed)
    if unknown:
        raise TypeError(f"unknown fields: {', '.join(sorted(unknown))}")
    for name, value in values.items():
        setattr(rule, name, value)
    return list(values)


@transaction.atomic
def budget_create(**values: Any) -> Budget:
    """A new budget; raises django's ValidationError naming the fields at fault."""
    budget = Budget()
    _assign(budget, BUDGET_FIELDS, values)
    budget.full_clean()
    budget.save()
    _invalidate_on_commit()
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, **values: Any) -> Budget:
    changed = _assign(budget, BUDGET_FIELDS, values)
    budget.updated_at = timezone.now()
    budget.full_clean()
    budget.save(update_fields=[*(name.removesuffix("_id") for name in changed), "updated_at"])
    _invalidate_on_commit()
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    budget.delete()
    _invalidate_on_commit()


@transaction.atomic
def rate_limit_create(**values: Any) -> RateLimit:
    limit = RateLimit()
    _assign(limit, RATE_LIMIT_FIELDS, values)
    limit.full_clean()
    limit.save()
    _invalidate_on_commit()
    return limit


@transaction.atomic
def rate_limit_update(*, limit: RateLimit, **values: Any) -> RateLimit:
    changed = _assign(limit, RATE_LIMIT_FIELDS, values)
    limit.updated_at = timezone.now()
    limit.full_clean()
    limit.save(update_fields=[*(name.removesuffix("_id") for name in changed), "updated_at"])
    _invalidate_on_commit()
    return limit


@transaction.atomic
def rate_limit_delete(*, limit: RateLimit) -> None:
    limit.delete()
    _invalidate_on_commit()


@transaction.atomic
def budget_save(*, budget: Budget) -> Budget:
    """Save a budget edited as a whole (the admin's form), validated like the others."""
    budget.updated_at = timezone.now()
    budget.full_clean()
    budget.save()
    _invalidate_on_commit()
    return budget


@transaction.atomic
def rate_limit_save(*, limit: RateLimit) -> RateLimit:
    """Save rate limits edited as a whole (the admin's form)."""
    limit.updated_at = timezone.now()
    limit.full_clean()
    limit.save()
    _invalidate_on_commit()
    return limit
