"""CSV exports of what a dashboard page shows: the series, top users, keys, models and usage
without a price.

Rows are built from selector results by pure functions; ``csv_response`` writes them. Text that
came from clients or admins (model names, emails, key labels) is defused so a spreadsheet never
runs it as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any

from django.http import HttpResponse

from usage.models import AGGREGATE_COUNT_FIELDS, TOKEN_COUNT_FIELDS
from usage.selectors import KeyUsage, ModelUsage, UnpricedUsage, UsageReport, UsageSums, UserUsage

# The aggregate's counters in their own order, then what is derived from them.
SUM_COLUMNS: tuple[str, ...] = (*AGGREGATE_COUNT_FIELDS, "total_tokens", "cost_usd")
EXPORTS: tuple[str, ...] = ("series", "users", "keys", "models", "unpriced")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` with a leading quote when a spreadsheet would read it as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _sums(sums: UsageSums) -> list[Any]:
    return [
        *(getattr(sums, name) for name in AGGREGATE_COUNT_FIELDS),
        sums.total_tokens,
        f"{sums.cost_usd:f}",
    ]


def series_rows(report: UsageReport) -> list[list[Any]]:
    """One row per bucket for all providers together, then one per provider with usage."""
    rows: list[list[Any]] = [["bucket_start", "bucket_end", "provider", *SUM_COLUMNS]]
    providers = report.providers
    for point in report.points:
        start, end = point.start.isoformat(), point.end.isoformat()
        rows.append([start, end, "all", *_sums(point.totals)])
        for provider in providers:
            sums = point.by_provider.get(provider, UsageSums())
            rows.append([start, end, safe_text(provider), *_sums(sums)])
    return rows


def user_rows(users: Sequence[UserUsage]) -> list[list[Any]]:
    rows: list[list[Any]] = [["rank", "user_id", "email", *SUM_COLUMNS]]
    for rank, user in enumerate(users, start=1):
        rows.append([rank, user.user_id, safe_text(user.email), *_sums(user.sums)])
    return rows


def key_rows(keys: Sequence[KeyUsage]) -> list[list[Any]]:
    rows: list[list[Any]] = [
        ["rank", "access_key_id", "prefix", "label", "user_id", "email", *SUM_COLUMNS]
    ]
    for rank, key in enumerate(keys, start=1):
        rows.append(
            [
                rank,
                key.access_key_id,
                safe_text(key.prefix),
                safe_text(key.label),
                key.user_id,
                safe_text(key.email),
                *_sums(key.sums),
            ]
        )
    return rows


def model_rows(models: Sequence[ModelUsage]) -> list[list[Any]]:
    rows: list[list[Any]] = [["provider", "model", *SUM_COLUMNS]]
    for usage in models:
        rows.append([safe_text(usage.provider), safe_text(usage.model), *_sums(usage.sums)])
    return rows


def unpriced_rows(usages: Sequence[UnpricedUsage]) -> list[list[Any]]:
    rows: list[list[Any]] = [
        [
            "provider",
            "upstream_model",
            "requested_model",
            "events",
            *TOKEN_COUNT_FIELDS,
            "total_tokens",
            "first_at",
            "last_at",
        ]
    ]
    for usage in usages:
        rows.append(
            [
                safe_text(usage.provider),
                safe_text(usage.upstream_model),
                safe_text(usage.requested_model),
                usage.events,
                *(getattr(usage, name) for name in TOKEN_COUNT_FIELDS),
                usage.total_tokens,
                usage.first_at.isoformat(),
                usage.last_at.isoformat(),
            ]
        )
    return rows


def csv_response(rows: Iterable[Sequence[Any]], *, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response
