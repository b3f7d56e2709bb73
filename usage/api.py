"""The admin usage API (mounted under /api/admin/usage): totals, time series, top users and
usage without a price.

Staff only: a Django session of an active staff user allowed to view usage aggregates, or the
admin token (``Authorization: Bearer <GATEWAY_ADMIN_API_TOKEN>``; token access is off while the
setting is empty). Endpoints validate with usage.selectors and shape its results; bad input is a
400 naming the parameter, never a 500.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer

from usage.models import AGGREGATE_COUNT_FIELDS
from usage.selectors import (
    UnpricedUsage,
    UsageQuery,
    UsageReport,
    UsageSums,
    usage_query_build,
    usage_report,
    usage_top_users,
    usage_unpriced,
)
from usage.timeseries import UsageQueryError

VIEW_PERMISSION = "usage.view_usageaggregate"


# --- Authentication -----------------------------------------------------------------------------


class AdminTokenAuth(HttpBearer):
    """The operator's admin token, for scripts and monitoring."""

    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        expected = settings.GATEWAY_ADMIN_API_TOKEN
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return "admin-token"
        return None


class StaffSessionAuth(APIKeyCookie):
    """The Django admin session: logged-in staff allowed to view usage; others get a 403."""

    param_name = settings.SESSION_COOKIE_NAME

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = request.user
        if not user.is_authenticated:
            return None
        if user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION):
            return user
        raise HttpError(403, "Usage is visible to staff allowed to view usage aggregates only.")


router = Router(auth=[AdminTokenAuth(), StaffSessionAuth()], tags=["usage"])


# --- Schemas ------------------------------------------------------------------------------------


class UsageParams(Schema):
    user: int | None = Field(None, description="User id; 0 selects usage without a user.")
    access_key: int | None = Field(None, description="Access key id; 0 selects usage without one.")
    provider: str | None = Field(
        None, description="anthropic, bedrock, openai, gemini, ollama or a generic server's name."
    )
    model: str | None = Field(None, description="Model name as stored in the aggregates.")
    from_: str | None = Field(
        None,
        alias="from",
        description="ISO 8601 date or date-time; without an offset it is local time in tz. "
        "Default: one day before `to`.",
    )
    to: str | None = Field(None, description="ISO 8601, exclusive. Default: now.")
    granularity: str = Field("hour", description="minute, hour, day, week (Monday) or month.")
    tz: str = Field("UTC", description="IANA time zone of the buckets, e.g. Asia/Seoul.")


class TopUsersParams(UsageParams):
    # Only aligns from/to here (no series), so a coarser default allows long ranges.
    granularity: str = Field(
        "day", description="Bucket size that from/to are widened to: minute ... month."
    )
    order_by: str = Field("cost", description="cost or tokens.")
    limit: int = Field(10, ge=1, le=100)


class UnpricedParams(UsageParams):
    # Only aligns from/to here (no series), so a coarser default allows long ranges.
    granularity: str = Field(
        "day", description="Bucket size that from/to are widened to: minute ... month."
    )


class SumsOut(Schema):
    requests: int
    errors: int
    fallbacks: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost_usd: Decimal = Field(description="Exact, serialized as a decimal string.")
    fallback_rate: float
    error_rate: float


class ProviderOut(SumsOut):
    provider: str
    share_requests: float
    share_tokens: float
    share_cost: float


class PointOut(Schema):
    start: datetime
    end: datetime
    totals: SumsOut
    by_provider: dict[str, SumsOut]


class FiltersOut(Schema):
    user: int | None
    access_key: int | None
    provider: str | None
    model: str | None


class UsageOut(Schema):
    from_: datetime = Field(alias="from", description="Start of the first bucket (local time).")
    to: datetime = Field(description="End of the last bucket (local time), exclusive.")
    granularity: str
    tz: str
    filters: FiltersOut
    totals: SumsOut
    by_provider: list[ProviderOut]
    series: list[PointOut]


class TopUserOut(SumsOut):
    user_id: int
    email: str


class TopUsersOut(Schema):
    from_: datetime = Field(alias="from")
    to: datetime
    tz: str
    order_by: str
    filters: FiltersOut
    users: list[TopUserOut]


class UnpricedOut(Schema):
    provider: str
    upstream_model: str = Field(description="The model the provider was asked for.")
    requested_model: str = Field(description="The model the client sent (an alias, prefixed...).")
    price_model: str = Field(description="The name to add a Price row under (looked up first).")
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    first_at: datetime
    last_at: datetime


class UnpricedListOut(Schema):
    from_: datetime = Field(alias="from")
    to: datetime
    tz: str
    filters: FiltersOut
    unpriced: list[UnpricedOut]


class ErrorOut(Schema):
    detail: str
    param: str


# --- Shaping ------------------------------------------------------------------------------------
# Responses are built as JSON-ready dicts and written directly: validating a long series (a day
# by minute is 1,440 points) through the response schemas would cost more than the report.
# The schemas above still document the responses, and the tests check responses against them.


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _json(payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(json.dumps(payload), content_type="application/json")


def _sums(sums: UsageSums) -> dict[str, Any]:
    return {
        **{name: getattr(sums, name) for name in AGGREGATE_COUNT_FIELDS},
        "total_tokens": sums.total_tokens,
        "cost_usd": str(sums.cost_usd),
        "fallback_rate": sums.fallback_rate,
        "error_rate": sums.error_rate,
    }


def _range(query: UsageQuery) -> dict[str, Any]:
    zone = query.plan.zone
    return {
        "from": _time(query.plan.start.astimezone(zone)),
        "to": _time(query.plan.end.astimezone(zone)),
        "tz": query.tz_name,
        "filters": {
            "user": query.filters.user_id,
            "access_key": query.filters.access_key_id,
            "provider": query.filters.provider,
            "model": query.filters.model,
        },
    }


def _report(report: UsageReport) -> dict[str, Any]:
    return {
        **_range(report.query),
        "granularity": report.query.granularity,
        "totals": _sums(report.totals),
        "by_provider": [
            {
                "provider": provider,
                **_sums(report.by_provider[provider]),
                "share_requests": report.share(provider, "requests"),
                "share_tokens": report.share(provider, "tokens"),
                "share_cost": report.share(provider, "cost"),
            }
            for provider in report.providers
        ],
        "series": [
            {
                "start": _time(point.start),
                "end": _time(point.end),
                "totals": _sums(point.totals),
                "by_provider": {
                    provider: _sums(sums) for provider, sums in sorted(point.by_provider.items())
                },
            }
            for point in report.points
        ],
    }


def _query(params: UsageParams) -> UsageQuery:
    return usage_query_build(
        start=params.from_,
        end=params.to,
        granularity=params.granularity,
        tz=params.tz,
        user_id=params.user,
        access_key_id=params.access_key,
        provider=params.provider,
        model=params.model,
    )


def _error(exc: UsageQueryError) -> Status[dict[str, str]]:
    return Status(400, {"detail": str(exc), "param": exc.param})


# --- Endpoints ----------------------------------------------------------------------------------


@router.get("", response={200: UsageOut, 400: ErrorOut}, by_alias=True, summary="Usage report")
def usage(request: HttpRequest, params: Query[UsageParams]) -> Any:
    """Totals, per-provider totals with shares, and the time series; global unless filtered."""
    try:
        return _json(_report(usage_report(_query(params))))
    except UsageQueryError as exc:
        return _error(exc)


@router.get(
    "/top-users",
    response={200: TopUsersOut, 400: ErrorOut},
    by_alias=True,
    summary="Top users by cost or tokens",
)
def top_users(request: HttpRequest, params: Query[TopUsersParams]) -> Any:
    try:
        query = _query(params)
        users = usage_top_users(query, rank_by=params.order_by, limit=params.limit)
    except UsageQueryError as exc:
        return _error(exc)
    return _json(
        {
            **_range(query),
            "order_by": params.order_by,
            "users": [
                {"user_id": user.user_id, "email": user.email, **_sums(user.sums)} for user in users
            ],
        }
    )


@router.get(
    "/unpriced",
    response={200: UnpricedListOut, 400: ErrorOut},
    by_alias=True,
    summary="Usage without a price",
)
def unpriced(request: HttpRequest, params: Query[UnpricedParams]) -> Any:
    """Per provider, upstream and requested model: events in the range that cost 0 because no
    price covers them (Ollama and generic servers without any price are free, not listed).
    Read from raw events, so days already pruned are not seen."""
    try:
        query = _query(params)
        usages = usage_unpriced(query)
    except UsageQueryError as exc:
        return _error(exc)
    return _json({**_range(query), "unpriced": [_unpriced(usage) for usage in usages]})


def _unpriced(usage: UnpricedUsage) -> dict[str, Any]:
    return {
        "provider": usage.provider,
        "upstream_model": usage.upstream_model,
        "requested_model": usage.requested_model,
        "price_model": usage.price_model,
        "events": usage.events,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "total_tokens": usage.total_tokens,
        "first_at": _time(usage.first_at),
        "last_at": _time(usage.last_at),
    }


def validation_error_response(
    request: HttpRequest, exc: ValidationError | type[ValidationError]
) -> HttpResponse:
    """Turns the framework's 422 for malformed parameters into a 400 naming them."""
    names: list[str] = []
    messages: list[str] = []
    errors = exc.errors if isinstance(exc, ValidationError) else []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "params")]
        name = location[-1] if location else "request"
        name = "from" if name == "from_" else name
        names.append(name)
        messages.append(f"{name}: {error.get('msg', 'invalid value')}")
    return JsonResponse(
        {"detail": "; ".join(messages) or "invalid request", "param": ",".join(names)},
        status=400,
    )
