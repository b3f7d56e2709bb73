"""Budgets and rate limits, each attached to one access key or one user (budgets may also be
global: every request, optionally of one provider).

Writes go through governance.services, which validates (``clean``) and invalidates the proxy's
cached policy; the proxy reads them through governance.selectors, once per key-cache lifetime.
"""

from __future__ import annotations

from typing import ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Scope(models.TextChoices):
    ACCESS_KEY = "access_key", "Access key"
    USER = "user", "User"
    GLOBAL = "global", "Global"


class Period(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week (from Monday)"
    MONTH = "month", "Month"


class Budget(models.Model):
    """At most ``limit_usd`` and/or ``limit_tokens`` per calendar ``period`` (in
    GATEWAY_BUDGET_TIME_ZONE). ``provider`` empty: every provider."""

    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    access_key = models.ForeignKey(
        "accounts.AccessKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    provider = models.CharField(
        max_length=16, blank=True, help_text="Only requests to this provider; empty: all."
    )
    period = models.CharField(max_length=8, choices=Period.choices)
    limit_usd = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, verbose_name="limit (USD)"
    )
    limit_tokens = models.BigIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("scope", "id")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=(
                    Q(scope="access_key", access_key__isnull=False, user__isnull=True)
                    | Q(scope="user", user__isnull=False, access_key__isnull=True)
                    | Q(scope="global", user__isnull=True, access_key__isnull=True)
                ),
                name="budget_scope_target",
            ),
            models.CheckConstraint(
                condition=Q(limit_usd__isnull=False) | Q(limit_tokens__isnull=False),
                name="budget_has_amount",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.get_scope_display()} budget #{self.pk}"

    @property
    def label(self) -> str:
        """How a refusal names the budget."""
        return self.name or f"{self.period} budget #{self.pk}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        _check_target(self, errors, allow_global=True)
        if self.period not in Period.values:
            errors["period"] = "Choose a period: day, week or month."
        if self.limit_usd is None and self.limit_tokens is None:
            errors["limit_usd"] = "Set a USD amount, a token amount, or both."
        if self.limit_usd is not None and self.limit_usd <= 0:
            errors["limit_usd"] = "The USD amount must be above 0."
        if self.limit_tokens is not None and self.limit_tokens <= 0:
            errors["limit_tokens"] = "The token amount must be above 0."
        if errors:
            raise ValidationError(errors)


class RateLimit(models.Model):
    """Requests and tokens per minute, concurrent requests and allowed models of one access key
    or one user (all of the user's keys together). An empty value does not limit."""

    scope = models.CharField(
        max_length=16, choices=[c for c in Scope.choices if c[0] != Scope.GLOBAL]
    )
    user = models.OneToOneField(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limit",
    )
    access_key = models.OneToOneField(
        "accounts.AccessKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limit",
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Model names or patterns ("claude-*", "openai/*"); empty: every model.',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("scope", "id")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=(
                    Q(scope="access_key", access_key__isnull=False, user__isnull=True)
                    | Q(scope="user", user__isnull=False, access_key__isnull=True)
                ),
                name="ratelimit_scope_target",
            ),
        ]

    def __str__(self) -> str:
        target = self.access_key if self.scope == Scope.ACCESS_KEY else self.user
        return f"Limits of {target}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        _check_target(self, errors, allow_global=False)
        for name in ("requests_per_minute", "tokens_per_minute", "concurrent_requests"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                errors[name] = "A limit must be at least 1; leave it empty for no limit."
        models_ = self.allowed_models
        if not isinstance(models_, list) or not all(
            isinstance(name, str) and name.strip() and len(name) <= 200 for name in models_
        ):
            errors["allowed_models"] = "A list of model names or patterns (non-empty strings)."
        if errors:
            raise ValidationError(errors)


def _check_target(rule: Budget | RateLimit, errors: dict[str, str], *, allow_global: bool) -> None:
    """The scope names exactly the target that is set."""
    if rule.scope == Scope.ACCESS_KEY:
        if rule.access_key_id is None:
            errors["access_key"] = "An access-key rule needs its access key."
        if rule.user_id is not None:
            errors["user"] = "An access-key rule has no user; use the user scope for that."
    elif rule.scope == Scope.USER:
        if rule.user_id is None:
            errors["user"] = "A user rule needs its user."
        if rule.access_key_id is not None:
            errors["access_key"] = "A user rule has no access key."
    elif rule.scope == Scope.GLOBAL and allow_global:
        if rule.user_id is not None or rule.access_key_id is not None:
            errors["scope"] = "A global budget has neither user nor access key."
    else:
        errors["scope"] = "Choose a scope: " + (
            "access_key, user or global." if allow_global else "access_key or user."
        )
