"""The usage dashboard's admin views: global, per user and per access key, with CSV export.

Mounted by usage.admin through ``ModelAdmin.get_urls()`` and ``admin_site.admin_view()``; pages
carry the admin's ``each_context()``. A view validates the filter form, asks the selectors (which
read aggregates only) and hands numbers, charts and tables to the template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import mark_safe

from accounts.models import AccessKey, User
from usage.dashboard import charts, export
from usage.dashboard.forms import COMMON_ZONES, DEFAULTS, DashboardForm
from usage.selectors import (
    KeyUsage,
    ModelUsage,
    UnpricedUsage,
    UsageQuery,
    UsageReport,
    UsageSums,
    UserUsage,
    access_key_for_report,
    known_providers,
    usage_by_model,
    usage_report,
    usage_top_keys,
    usage_top_users,
    usage_unpriced,
    user_for_report,
)
from usage.timeseries import zone_names

TOP_USERS = 15
TOP_KEYS = 15
# Charts shown side by side are drawn narrower, so their text keeps its size on screen.
HALF_WIDTH = 520
_AXIS_FORMATS = {
    "minute": "%H:%M",
    "hour": "%m-%d %H:%M",
    "day": "%Y-%m-%d",
    "week": "%Y-%m-%d",
    "month": "%Y-%m",
}
_FULL_FORMATS = {
    "minute": "%Y-%m-%d %H:%M (UTC%z)",
    "hour": "%Y-%m-%d %H:%M (UTC%z)",
    "day": "%a %Y-%m-%d",
    "week": "week of %a %Y-%m-%d",
    "month": "%B %Y",
}


@dataclass(frozen=True)
class Subject:
    """Whose usage a page shows: everyone, one user or one access key."""

    kind: str  # "all", "user" or "key"
    user_id: int | None = None
    access_key_id: int | None = None
    user: User | None = None
    access_key: AccessKey | None = None

    @property
    def title(self) -> str:
        if self.kind == "user":
            name = self.user.email if self.user else f"user #{self.user_id} (deleted)"
            return f"Usage of {name}" if self.user_id else "Usage without a user"
        if self.kind == "key":
            if not self.access_key_id:
                return "Usage without an access key"
            if self.access_key is None:
                return f"Usage of access key #{self.access_key_id} (deleted)"
            return f"Usage of access key {self.access_key} ({self.access_key.user.email})"
        return "Usage dashboard"


def dashboard_urls(model_admin: admin.ModelAdmin[Any]) -> list[URLPattern]:
    """URL patterns of the dashboard, to prepend to ``model_admin``'s own."""
    site = model_admin.admin_site

    def wrap(kind: str) -> Callable[..., HttpResponse]:
        def view(request: HttpRequest, **kwargs: int) -> HttpResponse:
            return dashboard_view(request, model_admin=model_admin, kind=kind, **kwargs)

        return site.admin_view(view)

    return [
        path("dashboard/", wrap("all"), name="usage_dashboard"),
        path("dashboard/users/<int:user_id>/", wrap("user"), name="usage_dashboard_user"),
        path("dashboard/keys/<int:access_key_id>/", wrap("key"), name="usage_dashboard_key"),
    ]


def dashboard_view(
    request: HttpRequest,
    *,
    model_admin: admin.ModelAdmin[Any],
    kind: str,
    user_id: int | None = None,
    access_key_id: int | None = None,
) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    subject = Subject(
        kind=kind,
        user_id=user_id,
        access_key_id=access_key_id,
        user=user_for_report(user_id) if user_id else None,
        access_key=access_key_for_report(access_key_id) if access_key_id else None,
    )
    form = DashboardForm(request.GET, user_id=user_id, access_key_id=access_key_id)
    export_name = request.GET.get("export", "")
    if export_name and export_name not in export.EXPORTS:
        return HttpResponseBadRequest(f"export: unknown export {export_name!r}.")
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": subject.title,
        "subject": subject,
        "form": form,
        "opts": model_admin.model._meta,
        "common_zones": COMMON_ZONES,
        "zone_names": zone_names(),
        "dashboard_url": reverse("admin:usage_dashboard"),
        "provider_names": known_providers(),
    }
    if form.is_valid() and form.query is not None:
        query = form.query
        filters = _filter_params(form)
        if export_name:
            return _export(export_name, query, subject, filters, rank_by=form.cleaned_data["rank"])
        context.update(_page(query, subject, filters, rank_by=form.cleaned_data["rank"]))
        context["unpriced"] = unpriced_rows(
            usage_unpriced(query),
            zone=query.plan.zone,
            can_add=request.user.has_perm("usage.add_price"),
        )
    return TemplateResponse(request, "admin/usage/dashboard.html", context)


# --- Page building ------------------------------------------------------------------------------


def _filter_params(form: DashboardForm) -> dict[str, str]:
    """The form's values that differ from the defaults, to carry into links."""
    return {
        name: str(form.cleaned_data.get(name) or "")
        for name in DEFAULTS
        if str(form.cleaned_data.get(name) or "") != DEFAULTS[name]
    }


def _link(url: str, params: dict[str, str]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _page(
    query: UsageQuery, subject: Subject, filters: dict[str, str], *, rank_by: str
) -> dict[str, Any]:
    report = usage_report(query)
    models = usage_by_model(query)
    users: list[UserUsage] = []
    keys: list[KeyUsage] = []
    if subject.kind == "all":
        users = usage_top_users(query, rank_by=rank_by, limit=TOP_USERS)
        keys = usage_top_keys(query, rank_by=rank_by, limit=TOP_KEYS)
    elif subject.kind == "user":
        keys = usage_top_keys(query, rank_by=rank_by, limit=100)
    here = (
        reverse("admin:usage_dashboard")
        if subject.kind == "all"
        else reverse("admin:usage_dashboard_user", args=[subject.user_id])
        if subject.kind == "user"
        else reverse("admin:usage_dashboard_key", args=[subject.access_key_id])
    )
    return {
        "report": report,
        "range_label": _range_label(query),
        "cards": _cards(report),
        "provider_shares": _provider_shares(report),
        "charts": _charts(report),
        "point_rows": _point_rows(report),
        "providers": report.providers,
        "top_users": [
            {
                "usage": user,
                "url": _link(reverse("admin:usage_dashboard_user", args=[user.user_id]), filters),
            }
            for user in users
        ],
        "keys": [
            {
                "usage": key,
                "url": _link(
                    reverse("admin:usage_dashboard_key", args=[key.access_key_id]), filters
                ),
                "user_url": _link(
                    reverse("admin:usage_dashboard_user", args=[key.user_id]), filters
                ),
            }
            for key in keys
        ],
        "models": models,
        "rank_by": rank_by,
        "exports": {name: _link(here, {**filters, "export": name}) for name in export.EXPORTS},
    }


def add_price_url(provider: str, model: str) -> str:
    """The admin's form for a new Price row, with provider and model filled in."""
    return f"{reverse('admin:usage_price_add')}?{urlencode({'provider': provider, 'model': model})}"


def unpriced_rows(
    usages: list[UnpricedUsage], *, zone: tzinfo, can_add: bool
) -> list[dict[str, Any]]:
    """Usage without a price, with its first and last event in the report's zone and links to
    price it under the upstream model's name and, when it differs, the requested model's (no
    links for admins who cannot add prices)."""
    rows = []
    for usage in usages:
        links: list[dict[str, str]] = []
        if can_add:
            names = [usage.price_model, usage.requested_price_model]
            links = [
                {"model": name, "url": add_price_url(usage.provider, name)}
                for name in names
                if name
            ]
        rows.append(
            {
                "usage": usage,
                "first": f"{usage.first_at.astimezone(zone):%Y-%m-%d %H:%M}",
                "last": f"{usage.last_at.astimezone(zone):%Y-%m-%d %H:%M}",
                "add_links": links,
            }
        )
    return rows


def _range_label(query: UsageQuery) -> str:
    zone = query.plan.zone
    start = query.plan.start.astimezone(zone)
    end = query.plan.end.astimezone(zone)
    return (
        f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {query.tz_name} "
        f"· {query.plan.point_count} × {query.granularity}"
    )


def _cards(report: UsageReport) -> list[dict[str, str]]:
    totals = report.totals
    cards = [
        {"label": "Requests", "value": f"{totals.requests:,}"},
        {
            "label": "Tokens",
            "value": charts.format_count(totals.total_tokens),
            "detail": (
                f"in {charts.format_count(totals.input_tokens)} · out "
                f"{charts.format_count(totals.output_tokens)} · cache read "
                f"{charts.format_count(totals.cache_read_tokens)} · cache write "
                f"{charts.format_count(totals.cache_write_tokens)}"
            ),
        },
        {"label": "Cost", "value": charts.format_usd(float(totals.cost_usd))},
        {
            "label": "Fallback rate",
            "value": charts.format_percent(totals.fallback_rate),
            "detail": f"{totals.fallbacks:,} requests answered by the fallback",
        },
        {
            "label": "Error rate",
            "value": charts.format_percent(totals.error_rate),
            "detail": f"{totals.errors:,} errors",
        },
    ]
    return cards


def _provider_shares(report: UsageReport) -> list[dict[str, str]]:
    """Each provider's share of requests, tokens and cost, with its chart colour."""
    return [
        {
            "provider": provider,
            "color": charts.provider_color(provider),
            "requests": charts.format_percent(report.share(provider, "requests")),
            "tokens": charts.format_percent(report.share(provider, "tokens")),
            "cost": charts.format_percent(report.share(provider, "cost")),
        }
        for provider in report.providers
    ]


def _provider_series(
    report: UsageReport, value: Callable[[UsageSums], float]
) -> list[charts.ChartSeries]:
    return [
        charts.ChartSeries(
            name=provider,
            color=charts.provider_color(provider),
            values=[value(point.by_provider.get(provider, UsageSums())) for point in report.points],
        )
        for provider in report.providers
    ]


def _charts(report: UsageReport) -> dict[str, str]:
    granularity = report.query.granularity
    labels = [point.start.strftime(_AXIS_FORMATS[granularity]) for point in report.points]
    full_labels = [point.start.strftime(_FULL_FORMATS[granularity]) for point in report.points]
    totals = report.totals
    span = f"{len(labels)} {granularity} buckets in {report.query.tz_name}"
    providers = report.providers
    rendered: dict[str, str] = {
        "tokens": charts.stacked_bar_chart(
            chart_id="chart-tokens",
            title="Tokens by provider",
            summary=(
                f"Stacked bars of all tokens per bucket ({span}); total "
                f"{charts.format_count(totals.total_tokens)}, "
                + ", ".join(
                    f"{name} {charts.format_count(report.by_provider[name].total_tokens)}"
                    for name in providers
                )
                + "."
            ),
            labels=full_labels,
            axis_labels=labels,
            series=_provider_series(report, lambda sums: sums.total_tokens),
            formatter=charts.format_count,
        ),
        "cost": charts.stacked_bar_chart(
            chart_id="chart-cost",
            title="Cost by provider (USD)",
            summary=(
                f"Stacked bars of cost per bucket ({span}); total "
                f"{charts.format_usd(float(totals.cost_usd))}."
            ),
            labels=full_labels,
            axis_labels=labels,
            series=_provider_series(report, lambda sums: float(sums.cost_usd)),
            formatter=charts.format_usd,
        ),
        "fallback": charts.line_chart(
            chart_id="chart-fallback",
            title="Fallback rate",
            summary=(
                f"Share of requests answered by the fallback per bucket ({span}); overall "
                f"{charts.format_percent(totals.fallback_rate)}. Buckets without requests are "
                "left empty."
            ),
            labels=full_labels,
            axis_labels=labels,
            series=[
                charts.ChartSeries(
                    name="fallback rate",
                    color="#b03a2e",
                    values=[
                        point.totals.fallback_rate if point.totals.requests else None
                        for point in report.points
                    ],
                )
            ],
            formatter=charts.format_percent,
            width=HALF_WIDTH,
            y_max=charts.nice_ceiling(
                max(
                    (point.totals.fallback_rate for point in report.points),
                    default=0,
                )
                or 0.01
            ),
        ),
        "share": charts.share_chart(
            chart_id="chart-share",
            title="Share by provider",
            summary="Share of requests, tokens and cost per provider: "
            + "; ".join(
                f"{name} {charts.format_percent(report.share(name, 'requests'))} of requests"
                for name in providers
            )
            + ".",
            rows=[
                charts.ShareRow(
                    label=label,
                    parts=[
                        (
                            name,
                            report.by_provider[name].metric(metric),
                            charts.provider_color(name),
                        )
                        for name in providers
                    ],
                )
                for label, metric in (
                    ("Requests", "requests"),
                    ("Tokens", "tokens"),
                    ("Cost", "cost"),
                )
            ],
            width=HALF_WIDTH,
        ),
    }
    # The chart module escapes every piece of text it writes.
    return {name: mark_safe(svg) for name, svg in rendered.items()}  # noqa: S308


def _point_rows(report: UsageReport) -> list[list[str]]:
    """The series as text cells: bucket, requests, tokens and cost per provider, fallback rate."""
    granularity = report.query.granularity
    rows = []
    for point in report.points:
        cells = [point.start.strftime(_FULL_FORMATS[granularity]), f"{point.totals.requests:,}"]
        for provider in report.providers:
            sums = point.by_provider.get(provider, UsageSums())
            cells += [
                charts.format_count(sums.total_tokens),
                charts.format_usd(float(sums.cost_usd)),
            ]
        cells.append(
            charts.format_percent(point.totals.fallback_rate) if point.totals.requests else "–"
        )
        rows.append(cells)
    return rows


def _export(
    name: str, query: UsageQuery, subject: Subject, filters: dict[str, str], *, rank_by: str
) -> HttpResponse:
    zone = query.plan.zone
    stamp = (
        f"{query.plan.start.astimezone(zone):%Y%m%dT%H%M}-"
        f"{query.plan.end.astimezone(zone):%Y%m%dT%H%M}"
    )
    who = {"all": "all", "user": f"user{subject.user_id}", "key": f"key{subject.access_key_id}"}
    filename = f"usage-{name}-{who[subject.kind]}-{stamp}-{query.granularity}.csv"
    rows: list[list[Any]]
    if name == "series":
        rows = export.series_rows(usage_report(query))
    elif name == "users":
        rows = export.user_rows(usage_top_users(query, rank_by=rank_by, limit=TOP_USERS))
    elif name == "keys":
        limit = TOP_KEYS if subject.kind == "all" else 100
        rows = export.key_rows(usage_top_keys(query, rank_by=rank_by, limit=limit))
    elif name == "unpriced":
        rows = export.unpriced_rows(usage_unpriced(query))
    else:
        model_usage: list[ModelUsage] = usage_by_model(query)
        rows = export.model_rows(model_usage)
    return export.csv_response(rows, filename=filename)
