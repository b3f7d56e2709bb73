"""The admin log API (mounted under /api/admin/logs): the filtered list with cursor pages, and
one request's detail with its (redacted) bodies.

Staff only, as the usage API: a Django session of an active staff user allowed to view request
logs, or the admin token (``Authorization: Bearer <GATEWAY_ADMIN_API_TOKEN>``). Bad parameters
are a 400 naming the parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from ninja.security import APIKeyCookie

from requestlog.selectors import (
    LogFilters,
    LogQueryError,
    log_row,
    request_log_bodies,
    request_log_by_request_id,
    request_log_page,
)
from requestlog.views import VIEW_PERMISSION
from usage.api import AdminTokenAuth


class StaffLogSessionAuth(APIKeyCookie):
    """The Django admin session: logged-in staff allowed to view request logs."""

    param_name = settings.SESSION_COOKIE_NAME

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = request.user
        if not user.is_authenticated:
            return None
        if user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION):
            return user
        raise HttpError(403, "Request logs are visible to staff allowed to view them only.")


router = Router(auth=[AdminTokenAuth(), StaffLogSessionAuth()], tags=["request logs"])


class LogParams(Schema):
    from_: str | None = Field(
        None, alias="from", description="ISO 8601 date-time, inclusive (UTC without an offset)."
    )
    to: str | None = Field(None, description="ISO 8601 date-time, exclusive.")
    user: int | None = None
    access_key: int | None = None
    provider: str | None = None
    model: str | None = Field(None, description="Requested or upstream model.")
    status: str | None = Field(None, description="A code (429), a class (5xx), error or ok.")
    fallback: bool | None = None
    streamed: bool | None = None
    min_latency_ms: int | None = Field(None, ge=0)
    max_latency_ms: int | None = Field(None, ge=0)
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    request_id: str | None = None
    cursor: str | None = Field(None, description="next_cursor of the previous page.")
    limit: int = Field(50, ge=1, le=500)


class LogOut(Schema):
    request_id: str
    event_id: str
    occurred_at: datetime
    user_id: int | None
    access_key_id: int | None
    surface: str
    provider: str
    credential_fingerprint: str
    requested_model: str
    upstream_model: str
    status_code: int
    streamed: bool
    client_disconnected: bool
    time_to_first_byte_ms: int | None
    latency_ms: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: str | None
    fallback_reason: str
    session_id: str
    user_agent: str
    level: str
    has_body: bool
    attempts: list[Any]


class LogPageOut(Schema):
    items: list[LogOut]
    next_cursor: str | None


class BodiesOut(Schema):
    request_headers: dict[str, str]
    request: Any
    response: Any
    stream: str
    notes: list[str]
    media: list[str]
    tools: list[dict[str, Any]]


class LogDetailOut(LogOut):
    bodies: BodiesOut | None


class ErrorOut(Schema):
    detail: str
    param: str


def _instant(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date-time; one without an offset is UTC."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise LogQueryError(param, f"{param}: not an ISO 8601 date-time") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bad(exc: LogQueryError) -> JsonResponse:
    return JsonResponse({"detail": str(exc), "param": exc.param}, status=400)


@router.get("", response={200: LogPageOut, 400: ErrorOut}, summary="Request logs, newest first")
def logs_list(request: HttpRequest, params: Query[LogParams]) -> Any:
    try:
        since = _instant(params.from_, "from")
        until = _instant(params.to, "to")
    except LogQueryError as exc:
        return _bad(exc)
    filters = LogFilters(
        since=since,
        until=until,
        user=params.user,
        access_key=params.access_key,
        provider=params.provider,
        model=params.model,
        status=params.status,
        fallback=params.fallback,
        streamed=params.streamed,
        min_latency_ms=params.min_latency_ms,
        max_latency_ms=params.max_latency_ms,
        min_cost=params.min_cost,
        max_cost=params.max_cost,
        request_id=params.request_id,
    )
    try:
        rows, next_cursor = request_log_page(filters, cursor=params.cursor, limit=params.limit)
    except LogQueryError as exc:
        return _bad(exc)
    return JsonResponse({"items": [log_row(log) for log in rows], "next_cursor": next_cursor})


@router.get(
    "/{request_id}",
    response={200: LogDetailOut, 400: ErrorOut, 404: ErrorOut},
    summary="One request with its bodies",
)
def logs_detail(request: HttpRequest, request_id: str) -> Any:
    log = request_log_by_request_id(request_id)
    if log is None:
        return JsonResponse(
            {"detail": "No log of this request.", "param": "request_id"}, status=404
        )
    bodies = request_log_bodies(log)
    row = log_row(log)
    row["bodies"] = (
        None
        if bodies is None
        else {
            "request_headers": bodies.request_headers,
            "request": bodies.request,
            "response": bodies.response,
            "stream": bodies.stream,
            "notes": bodies.notes,
            "media": bodies.media,
            "tools": bodies.tools,
        }
    )
    return JsonResponse(row)
