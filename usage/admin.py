"""Admin for usage: read-only events and aggregates, the editable price table (with the usage that
has no price, and links to price it), the dead-letter events the rollup set aside (with an
action to queue them again) and the dashboard.

The dashboard's pages (usage.dashboard.views) hang off the aggregate admin's URLs and are linked
from the admin index and from the aggregate list.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property, reduce
from operator import or_
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import Provider
from usage.dashboard.views import dashboard_urls, unpriced_rows
from usage.models import (
    AGGREGATE_COUNT_FIELDS,
    DeadLetterUsageEvent,
    Price,
    UsageAggregate,
    UsageEvent,
)
from usage.pricing import price_names
from usage.rollup import usage_dead_letters_requeue
from usage.selectors import UnpricedUsage, known_providers, usage_query_build, usage_unpriced

# The index shows a link to the dashboard; a site that set its own index template keeps it.
if admin.site.index_template is None:
    admin.site.index_template = "admin/usage/index.html"


# Below this many rows an exact count is cheap enough.
ESTIMATE_COUNT_ABOVE = 100_000


class LargeTablePaginator(Paginator):
    """Counts an unfiltered list from PostgreSQL's row estimate instead of a full scan."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            connection = connections[queryset.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                        [queryset.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] > ESTIMATE_COUNT_ABOVE:
                    return int(row[0])
        return super().count


class ProviderFilter(admin.SimpleListFilter):
    """Built-in providers and named generic servers: listing the distinct values of the table
    would scan all of it."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = dict(Provider.choices)
        return [(name, labels.get(name, name)) for name in known_providers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(provider=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"
    _RANGES = {"ok": Q(status_code__lt=400), "4xx": Q(status_code__range=(400, 499))}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("ok", "Success"), ("4xx", "Client error (4xx)"), ("5xx", "Upstream error (5xx)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "5xx":
            return queryset.filter(status_code__gte=500)
        condition = self._RANGES.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


class FallbackFilter(admin.SimpleListFilter):
    title = "fallback"
    parameter_name = "fallback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Answered by the fallback"), ("no", "No fallback")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(fallback_reason="")
        if self.value() == "no":
            return queryset.filter(fallback_reason="")
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the gateway itself: browsable, never edited by hand."""

    # Counting a large table twice per page (filtered and in full) costs more than the page.
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = (
        "occurred_at",
        "user",
        "access_key",
        "provider",
        "requested_model",
        "upstream_model",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "status_code",
        "fallback_reason",
        "latency_ms",
        "cost_usd",
        "request_log",
    )
    list_filter = (ProviderFilter, StatusFilter, FallbackFilter, "streamed", "client_disconnected")
    list_select_related = ("user", "access_key")
    # Exact lookups only: they use indexes, where a substring search would scan the table.
    search_fields = ("=request_id", "=session_id", "=user__email", "=access_key__prefix")
    ordering = ("-occurred_at",)

    @admin.display(description="log")
    def request_log(self, event: UsageEvent) -> str:
        """A link to the request's log (by request id: no query per row)."""
        if not event.request_id:
            return "–"
        url = reverse("admin:requestlog_requestlog_by_request", args=[event.request_id])
        return format_html('<a href="{}">log</a>', url)


@admin.register(UsageAggregate)
class UsageAggregateAdmin(ReadOnlyAdmin):
    list_display = (
        "bucket_start",
        "bucket",
        "user_id",
        "access_key_id",
        "provider",
        "model",
        *AGGREGATE_COUNT_FIELDS,
        "cost_usd",
    )
    list_filter = ("bucket", ProviderFilter)
    search_fields = ("=model", "=user_id", "=access_key_id")
    # Newest rows first through the primary key: ordering by bucket start would sort the whole
    # table for every page (no index leads with it).
    ordering = ("-id",)

    def get_urls(self) -> list[URLPattern]:
        return [*dashboard_urls(self), *super().get_urls()]


# The periods the price list can look back over for usage without a price: (days, label).
UNPRICED_PERIODS: dict[str, tuple[int, str]] = {
    "1": (1, "Last day"),
    "7": (7, "Last 7 days"),
    "30": (30, "Last 30 days"),
}


def unpriced_for_period(request: HttpRequest, period: str) -> list[UnpricedUsage]:
    """Usage without a price over the last ``period`` days, read once per request."""
    cached: dict[str, list[UnpricedUsage]] = request.__dict__.setdefault("_usage_unpriced", {})
    if period not in cached:
        days = UNPRICED_PERIODS[period][0]
        end = timezone.now()
        query = usage_query_build(
            start=end - timedelta(days=days),
            end=end,
            granularity="hour" if days == 1 else "day",
        )
        cached[period] = usage_unpriced(query)
    return cached[period]


class UnpricedUsageFilter(admin.SimpleListFilter):
    """Narrows the price list to the rows that usage without a price would be priced by: rows
    of its models whose first ``valid_from`` comes after some of that usage. The page then
    lists that usage, with links to add the missing rows (most unpriced models have no row)."""

    title = "usage without a price"
    parameter_name = "unpriced"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (_, label) in UNPRICED_PERIODS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        period = self.value()
        if period not in UNPRICED_PERIODS:
            return queryset
        names = {
            (usage.provider, name)
            for usage in unpriced_for_period(request, period)
            for name in price_names(
                upstream_model=usage.upstream_model, requested_model=usage.requested_model
            )
        }
        if not names:
            return queryset.none()
        return queryset.filter(
            reduce(or_, (Q(provider=provider, model=model) for provider, model in names))
        )


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "model",
        "valid_from",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
    )
    list_filter = (UnpricedUsageFilter, "provider")
    search_fields = ("model",)
    ordering = ("provider", "model", "-valid_from")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        period = request.GET.get(UnpricedUsageFilter.parameter_name, "")
        context = dict(extra_context or {})
        context["unpriced_periods"] = [
            (key, label, f"?{UnpricedUsageFilter.parameter_name}={key}")
            for key, (_, label) in UNPRICED_PERIODS.items()
        ]
        if period in UNPRICED_PERIODS:
            context["unpriced_period"] = UNPRICED_PERIODS[period][1]
            context["unpriced"] = unpriced_rows(
                unpriced_for_period(request, period),
                zone=timezone.get_current_timezone(),
                can_add=self.has_add_permission(request),
            )
        return super().changelist_view(request, extra_context=context)


@admin.register(DeadLetterUsageEvent)
class DeadLetterUsageEventAdmin(ReadOnlyAdmin):
    """Events the rollup could not add to the aggregates: not counted until queued again."""

    list_display = (
        "set_aside_at",
        "event_link",
        "request_id",
        "occurred_at",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reason",
    )
    list_select_related = ("event",)
    search_fields = ("=event__request_id",)
    ordering = ("-set_aside_at",)
    actions = ("requeue",)

    @admin.display(description="event")
    def event_link(self, obj: DeadLetterUsageEvent) -> str:
        url = reverse("admin:usage_usageevent_change", args=[obj.event_id])
        return format_html('<a href="{}">{}</a>', url, obj.event_id)

    @admin.display(description="request id")
    def request_id(self, obj: DeadLetterUsageEvent) -> str:
        return obj.event.request_id

    @admin.display(description="occurred at")
    def occurred_at(self, obj: DeadLetterUsageEvent) -> Any:
        return obj.event.occurred_at

    @admin.display(description="input")
    def input_tokens(self, obj: DeadLetterUsageEvent) -> int:
        return obj.event.input_tokens

    @admin.display(description="output")
    def output_tokens(self, obj: DeadLetterUsageEvent) -> int:
        return obj.event.output_tokens

    @admin.display(description="cache read")
    def cache_read_tokens(self, obj: DeadLetterUsageEvent) -> int:
        return obj.event.cache_read_tokens

    @admin.display(description="cache write")
    def cache_write_tokens(self, obj: DeadLetterUsageEvent) -> int:
        return obj.event.cache_write_tokens

    @admin.action(description="Queue the selected events for the rollup again")
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetterUsageEvent]) -> None:
        queued = usage_dead_letters_requeue(
            event_ids=list(queryset.values_list("event_id", flat=True))
        )
        self.message_user(
            request,
            f"{queued} event{'s' if queued != 1 else ''} queued; the next rollup adds "
            "them, or sets them aside again if they still cannot be added.",
            messages.SUCCESS,
        )
