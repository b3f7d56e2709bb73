"""Admin for budgets and rate limits: forms validated by the models' rules (a budget without a
period or an amount, a limit of 0, a scope without its target are form errors), saved and
deleted through governance.services so that running gateways pick the change up at once."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from governance import services
from governance.models import Budget, RateLimit


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "scope",
        "user",
        "access_key",
        "provider",
        "period",
        "limit_usd",
        "limit_tokens",
        "enabled",
    )
    list_filter = ("scope", "period", "enabled")
    list_select_related = ("user", "access_key")
    raw_id_fields = ("user", "access_key")
    search_fields = ("name", "user__email", "access_key__prefix")
    readonly_fields = ("created_at", "updated_at")
    fields = (
        "name",
        "scope",
        "user",
        "access_key",
        "provider",
        "period",
        "limit_usd",
        "limit_tokens",
        "enabled",
        "created_at",
        "updated_at",
    )

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        services.budget_save(budget=obj)

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.budget_delete(budget=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            services.budget_delete(budget=budget)


class ModelListField(forms.CharField):
    """Allowed models, one name or pattern a line, stored as a list."""

    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return [str(item) for item in value]
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class RateLimitForm(forms.ModelForm):
    allowed_models = ModelListField(
        required=False,
        help_text='One model name or pattern a line ("claude-*", "openai/*"); empty: every model.',
    )

    class Meta:
        model = RateLimit
        fields = (
            "scope",
            "user",
            "access_key",
            "requests_per_minute",
            "tokens_per_minute",
            "concurrent_requests",
            "allowed_models",
            "enabled",
        )


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin):
    form = RateLimitForm
    list_display = (
        "__str__",
        "scope",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent_requests",
        "enabled",
    )
    list_filter = ("scope", "enabled")
    list_select_related = ("user", "access_key")
    raw_id_fields = ("user", "access_key")
    search_fields = ("user__email", "access_key__prefix")
    readonly_fields = ("created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: RateLimit, form: Any, change: bool) -> None:
        services.rate_limit_save(limit=obj)

    def delete_model(self, request: HttpRequest, obj: RateLimit) -> None:
        services.rate_limit_delete(limit=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RateLimit]) -> None:
        for limit in queryset:
            services.rate_limit_delete(limit=limit)
