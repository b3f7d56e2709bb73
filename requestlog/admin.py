"""Admin for request logs: the log viewer (a filtered list, newest first, without a full count;
a read-only detail page with the attempts, the redacted bodies pretty-printed, tool calls and
results, images inline) with CSV / JSON-lines export of the filtered list, and the logging
levels of users and keys.

Everything shown was redacted before it was stored (requestlog.capture); templates escape it
again like any other text.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import AccessKey, User
from requestlog.export import FORMATS, export_lines
from requestlog.models import LogLevelPolicy, MediaObject, RequestLog
from requestlog.selectors import (
    NEWEST_FIRST,
    LogBodies,
    LogFilters,
    filtered,
    request_log_bodies,
)

# Pages are numbered up to this many rows; the count stops there instead of scanning.
COUNT_LIMIT = 10_000
# On PostgreSQL the count may take this long; a filter matching few of millions of rows would
# otherwise scan them all just to number the pages. Past it, the planner's estimate is used.
COUNT_TIMEOUT_MS = 30


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT + 1 rows, and on PostgreSQL for at most COUNT_TIMEOUT_MS
    (then estimates): a list of millions shows its first page at once, whatever the filter."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        capped = queryset.order_by().values_list("pk", flat=True)[: COUNT_LIMIT + 1]
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return len(capped)
        try:
            with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {COUNT_TIMEOUT_MS}")
                return len(capped)
        except OperationalError:
            return self._estimate(capped)

    @staticmethod
    def _estimate(capped: QuerySet[Any]) -> int:
        sql, params = capped.query.sql_with_params()
        with connections[capped.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class _Choices(admin.SimpleListFilter):
    """A list filter whose choices map to request log filters."""

    options: tuple[tuple[str, str, LogFilters], ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label, _ in self.options]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        for value, _, filters in self.options:
            if self.value() == value:
                return filtered(queryset, filters)
        return queryset


def _ago(**kwargs: float) -> Any:
    return timezone.now() - timedelta(**kwargs)


class TimeRangeFilter(admin.SimpleListFilter):
    title = "time"
    parameter_name = "since"
    ranges = {"1h": {"hours": 1}, "24h": {"days": 1}, "7d": {"days": 7}, "30d": {"days": 30}}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, f"Last {key}") for key in self.ranges]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        delta = self.ranges.get(self.value() or "")
        if delta is None:
            return queryset
        return queryset.filter(event__occurred_at__gte=_ago(**delta))


class UserFilter(admin.SimpleListFilter):
    title = "user"
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), email) for pk, email in User.objects.values_list("id", "email")[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(event__user_id=int(value)) if value and value.isdigit() else queryset


class KeyFilter(admin.SimpleListFilter):
    title = "access key"
    parameter_name = "key"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        keys = AccessKey.objects.order_by("prefix").values_list("id", "prefix", "label")[:200]
        return [(str(pk), f"{prefix}… {label}".strip()) for pk, prefix, label in keys]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(event__access_key_id=int(value))
        return queryset


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from usage.selectors import known_providers

        return [(name, name) for name in known_providers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(event__provider=value) if value else queryset


class ModelFilter(admin.SimpleListFilter):
    """Models seen in the daily aggregates (a small table), not the distinct values of logs."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from usage.models import UsageAggregate

        names = (
            UsageAggregate.objects.filter(bucket="day", bucket_start__gte=_ago(days=90))
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()[:200]
        )
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return filtered(queryset, LogFilters(model=value)) if value else queryset


class StatusFilter(_Choices):
    title = "status"
    parameter_name = "status"
    options = (
        ("ok", "Success (< 400)", LogFilters(status="ok")),
        ("error", "Error (≥ 400)", LogFilters(status="error")),
        ("4xx", "4xx", LogFilters(status="4xx")),
        ("429", "429 rate limited", LogFilters(status="429")),
        ("499", "499 client gone", LogFilters(status="499")),
        ("5xx", "5xx", LogFilters(status="5xx")),
    )


class FallbackFilter(_Choices):
    title = "fallback"
    parameter_name = "fallback"
    options = (
        ("yes", "Fallback", LogFilters(fallback=True)),
        ("no", "No fallback", LogFilters(fallback=False)),
    )


class StreamingFilter(_Choices):
    title = "streaming"
    parameter_name = "streamed"
    options = (
        ("yes", "Streamed", LogFilters(streamed=True)),
        ("no", "Whole answer", LogFilters(streamed=False)),
    )


class LatencyFilter(_Choices):
    title = "latency"
    parameter_name = "latency"
    options = (
        ("lt1", "< 1 s", LogFilters(max_latency_ms=999)),
        ("1-10", "1–10 s", LogFilters(min_latency_ms=1000, max_latency_ms=9999)),
        ("10-60", "10–60 s", LogFilters(min_latency_ms=10_000, max_latency_ms=59_999)),
        ("gt60", "≥ 60 s", LogFilters(min_latency_ms=60_000)),
    )


class CostFilter(_Choices):
    title = "cost"
    parameter_name = "cost"
    options = (
        ("lt0.01", "< $0.01", LogFilters(max_cost=Decimal("0.0099999999"))),
        ("0.01-0.1", "$0.01–0.10",
         LogFilters(min_cost=Decimal("0.01"), max_cost=Decimal("0.0999999999"))),
        ("0.1-1", "$0.10–1",
         LogFilters(min_cost=Decimal("0.1"), max_cost=Decimal("0.9999999999"))),
        ("gt1", "≥ $1", LogFilters(min_cost=Decimal("1"))),
    )  # fmt: skip


def _pretty(value: Any) -> SafeString:
    if value is None or value == "":
        return format_html("<em>{}</em>", "none")
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return format_html(
        '<pre style="white-space:pre-wrap;max-height:40em;overflow:auto">{}</pre>', text
    )


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = (
        "occurred_at",
        "request_id",
        "user_display",
        "provider",
        "model_display",
        "status",
        "latency",
        "tokens",
        "cost",
        "fallback",
        "streamed",
    )
    list_filter = (
        TimeRangeFilter,
        UserFilter,
        KeyFilter,
        ProviderFilter,
        ModelFilter,
        StatusFilter,
        FallbackFilter,
        StreamingFilter,
        LatencyFilter,
        CostFilter,
    )
    search_fields = ("request_id",)
    search_help_text = "Request id (exact), as in the x-gateway-request-id header."
    list_select_related = ("event",)
    ordering = NEWEST_FIRST
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    change_list_template = "admin/requestlog/requestlog/change_list.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "request_id",
                    "occurred_at",
                    "user_display",
                    "key_display",
                    "surface",
                    "provider",
                    "credential_fingerprint",
                    "model_display",
                    "status",
                    "timings",
                    "tokens",
                    "cost",
                    "fallback",
                    "client",
                    "level",
                )
            },
        ),
        ("Attempts", {"fields": ("attempts_display",)}),
        (
            "Bodies (redacted)",
            {
                "fields": (
                    "notes_display",
                    "request_headers_display",
                    "request_display",
                    "response_display",
                    "tools_display",
                    "media_display",
                    "stream_display",
                )
            },
        ),
    )
    readonly_fields = (
        "request_id",
        "occurred_at",
        "user_display",
        "key_display",
        "surface",
        "provider",
        "credential_fingerprint",
        "model_display",
        "status",
        "timings",
        "tokens",
        "cost",
        "fallback",
        "client",
        "level",
        "attempts_display",
        "notes_display",
        "request_headers_display",
        "request_display",
        "response_display",
        "tools_display",
        "media_display",
        "stream_display",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # An exact match on the indexed id: a substring search would scan every row.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(request_id=term), False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="requestlog_requestlog_export",
            ),
            path(
                "by-request/<str:request_id>/",
                self.admin_site.admin_view(self.by_request_view),
                name="requestlog_requestlog_by_request",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The filtered list as CSV or JSON lines (``?format=csv|jsonl`` plus the list's own
        filter parameters)."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        fmt = request.GET.get("format", "csv")
        if fmt not in FORMATS:
            return HttpResponse("format: csv or jsonl", status=400, content_type="text/plain")
        params = request.GET.copy()
        params.pop("format", None)
        request.GET = params  # type: ignore[assignment]  # the list reads its filters there
        changelist = self.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
        response = StreamingHttpResponse(export_lines(queryset, fmt), content_type=FORMATS[fmt])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="request-logs-{stamp}.{fmt}"'
        return response

    def by_request_view(self, request: HttpRequest, request_id: str) -> HttpResponse:
        """The detail page of a request named by its id (links from usage pages)."""
        log = RequestLog.objects.filter(request_id=request_id).order_by("-occurred_at").first()
        if log is None:
            changelist = reverse("admin:requestlog_requestlog_changelist")
            return HttpResponseRedirect(f"{changelist}?q={request_id}")
        return HttpResponseRedirect(reverse("admin:requestlog_requestlog_change", args=[log.pk]))

    # --- columns --------------------------------------------------------------------------------

    @admin.display(description="user")
    def user_display(self, log: RequestLog) -> str:
        return str(log.event.user_id or "—")

    @admin.display(description="access key")
    def key_display(self, log: RequestLog) -> str:
        key_id = log.event.access_key_id
        if key_id is None:
            return "—"
        key = AccessKey.objects.filter(pk=key_id).values_list("prefix", "label").first()
        return f"{key[0]}… {key[1]}".strip() if key else f"#{key_id} (removed)"

    @admin.display(description="provider")
    def provider(self, log: RequestLog) -> str:
        return log.event.provider

    @admin.display(description="model")
    def model_display(self, log: RequestLog) -> str:
        event = log.event
        if event.upstream_model and event.upstream_model != event.requested_model:
            return f"{event.requested_model} → {event.upstream_model}"
        return event.requested_model

    @admin.display(description="status")
    def status(self, log: RequestLog) -> int:
        return log.event.status_code

    @admin.display(description="latency")
    def latency(self, log: RequestLog) -> str:
        return f"{log.event.latency_ms} ms"

    @admin.display(description="timings")
    def timings(self, log: RequestLog) -> str:
        event = log.event
        ttfb = "—" if event.time_to_first_byte_ms is None else f"{event.time_to_first_byte_ms} ms"
        return f"first byte {ttfb}, total {event.latency_ms} ms"

    @admin.display(description="tokens")
    def tokens(self, log: RequestLog) -> str:
        event = log.event
        text = f"{event.input_tokens} in / {event.output_tokens} out"
        if event.cache_read_tokens or event.cache_write_tokens:
            text += f" (cache {event.cache_read_tokens} read, {event.cache_write_tokens} write)"
        return text

    @admin.display(description="cost")
    def cost(self, log: RequestLog) -> str:
        return "—" if log.event.cost_usd is None else f"${log.event.cost_usd:.6f}"

    @admin.display(description="fallback")
    def fallback(self, log: RequestLog) -> str:
        return log.event.fallback_reason or "—"

    @admin.display(description="streamed", boolean=True)
    def streamed(self, log: RequestLog) -> bool:
        return log.event.streamed

    @admin.display(description="client")
    def client(self, log: RequestLog) -> str:
        session = log.event.session_id
        return f"{log.user_agent or '—'}" + (f" · session {session}" if session else "")

    @admin.display(description="attempts")
    def attempts_display(self, log: RequestLog) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    position,
                    attempt.get("provider", ""),
                    attempt.get("model", ""),
                    attempt.get("credential", ""),
                    f"{attempt.get('outcome', '')} {attempt.get('status') or ''}".strip(),
                    f"{attempt.get('latency_ms', '—')} ms",
                )
                for position, attempt in enumerate(log.attempts or [], start=1)
                if isinstance(attempt, dict)
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>provider</th><th>model</th><th>credential</th>"
            "<th>outcome</th><th>latency</th></tr>{}</table>",
            rows,
        )

    # --- bodies ---------------------------------------------------------------------------------

    def _bodies(self, log: RequestLog) -> LogBodies | None:
        # Decoded once per page, kept on the row object (the admin instance is shared by all
        # requests and threads).
        if not hasattr(log, "_decoded_bodies"):
            log._decoded_bodies = request_log_bodies(log)  # type: ignore[attr-defined]
        return log._decoded_bodies  # type: ignore[attr-defined]

    @admin.display(description="notes")
    def notes_display(self, log: RequestLog) -> str:
        bodies = self._bodies(log)
        if bodies is None:
            return "No bodies: logged at level metadata, or past body retention."
        return ", ".join(bodies.notes) or "—"

    @admin.display(description="request headers")
    def request_headers_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        return _pretty(bodies.request_headers if bodies else None)

    @admin.display(description="request")
    def request_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        return _pretty(bodies.request if bodies else None)

    @admin.display(description="response")
    def response_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        return _pretty(bodies.response if bodies else None)

    @admin.display(description="raw stream")
    def stream_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        return _pretty(bodies.stream if bodies else None)

    @admin.display(description="tool calls and results")
    def tools_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        if not bodies or not bodies.tools:
            return format_html("<em>{}</em>", "none")
        return format_html_join(
            "",
            "<div><strong>{} {}</strong> {} {}{}</div>",
            (
                (
                    item["where"],
                    item["kind"],
                    item.get("name") or "",
                    item.get("id") or "",
                    _pretty(item.get("data")),
                )
                for item in bodies.tools
            ),
        )

    @admin.display(description="media")
    def media_display(self, log: RequestLog) -> SafeString:
        bodies = self._bodies(log)
        if not bodies or not bodies.media:
            return format_html("<em>{}</em>", "none")
        types = dict(
            MediaObject.objects.filter(sha256__in=bodies.media).values_list(
                "sha256", "content_type"
            )
        )
        items = []
        for sha256 in bodies.media:
            url = reverse("requestlog_media", args=[sha256])
            content_type = types.get(sha256, "")
            if content_type.startswith("image/"):
                items.append(
                    format_html(
                        '<div><img src="{}" alt="{}" style="max-width:30em;max-height:30em"></div>',
                        url,
                        sha256[:12],
                    )
                )
            else:
                items.append(
                    format_html(
                        '<div><a href="{}">{} ({})</a></div>',
                        url,
                        sha256[:12],
                        content_type or "missing",
                    )
                )
        return format_html_join("", "{}", ((item,) for item in items))


@admin.register(LogLevelPolicy)
class LogLevelPolicyAdmin(admin.ModelAdmin):
    """Logging levels of single users and keys; the installation's is GATEWAY_REQUEST_LOG_LEVEL."""

    list_display = ("__str__", "user", "access_key", "level")
    list_filter = ("level",)
    raw_id_fields = ("user", "access_key")
    list_select_related = ("user", "access_key")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        from requestlog.services import log_level_set

        log_level_set(level=obj.level, user_id=obj.user_id, access_key_id=obj.access_key_id)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        from requestlog.services import log_level_set

        log_level_set(level="", user_id=obj.user_id, access_key_id=obj.access_key_id)
