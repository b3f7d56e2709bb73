"""Reads of the request log: filtered lists (admin, API, export), one request's detail.

Lists are ordered newest first by the usage event's ``(occurred_at, id)`` and paged by keyset
(a cursor naming the last row seen), never by offset or a full count: the tables hold millions
of rows. Ordering by the event's columns lets PostgreSQL walk the event table's time index (or
its user index) and test the filters on the event's own row, joining a log only for rows that
match; ordered by the log's copy of the time, every row scanned needed the join first, and a
rare filter (429s, one user) took ten times as long on two million rows (bench/requestlog.py).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from requestlog.capture import decode_body
from requestlog.models import RequestLog

MEDIA_REFERENCE = "gateway-media:"
NEWEST_FIRST = ("-event__occurred_at", "-event__id")


class LogQueryError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class LogFilters:
    since: datetime | None = None
    until: datetime | None = None
    user: int | None = None
    access_key: int | None = None
    provider: str | None = None
    model: str | None = None
    status: str | None = None  # "429", or a class: "4xx", "error" (>= 400), "ok" (< 400)
    fallback: bool | None = None
    streamed: bool | None = None
    min_latency_ms: int | None = None
    max_latency_ms: int | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    request_id: str | None = None


def _status_q(status: str) -> Q:
    status = status.strip().lower()
    if status == "error":
        return Q(event__status_code__gte=400)
    if status == "ok":
        return Q(event__status_code__lt=400)
    if len(status) == 3 and status.endswith("xx") and status[0].isdigit():
        base = int(status[0]) * 100
        return Q(event__status_code__gte=base, event__status_code__lt=base + 100)
    if status.isdigit():
        return Q(event__status_code=int(status))
    raise LogQueryError("status", "status: a code (429), a class (4xx), error or ok")


def request_logs(filters: LogFilters) -> QuerySet[RequestLog]:
    """The logs matching ``filters``, newest first, with their events."""
    queryset = RequestLog.objects.select_related("event").order_by(*NEWEST_FIRST)
    return filtered(queryset, filters)


def filtered(queryset: QuerySet[RequestLog], filters: LogFilters) -> QuerySet[RequestLog]:
    """``queryset`` narrowed by ``filters`` (a request id alone decides when given)."""
    if filters.request_id:
        return queryset.filter(request_id=filters.request_id.strip())
    conditions = Q()
    if filters.since is not None:
        conditions &= Q(event__occurred_at__gte=filters.since)
    if filters.until is not None:
        conditions &= Q(event__occurred_at__lt=filters.until)
    if filters.user is not None:
        conditions &= Q(event__user_id=filters.user)
    if filters.access_key is not None:
        conditions &= Q(event__access_key_id=filters.access_key)
    if filters.provider:
        conditions &= Q(event__provider=filters.provider)
    if filters.model:
        conditions &= Q(event__requested_model=filters.model) | Q(
            event__upstream_model=filters.model
        )
    if filters.status:
        conditions &= _status_q(filters.status)
    if filters.fallback is not None:
        conditions &= (
            ~Q(event__fallback_reason="") if filters.fallback else Q(event__fallback_reason="")
        )
    if filters.streamed is not None:
        conditions &= Q(event__streamed=filters.streamed)
    if filters.min_latency_ms is not None:
        conditions &= Q(event__latency_ms__gte=filters.min_latency_ms)
    if filters.max_latency_ms is not None:
        conditions &= Q(event__latency_ms__lte=filters.max_latency_ms)
    if filters.min_cost is not None:
        conditions &= Q(event__cost_usd__gte=filters.min_cost)
    if filters.max_cost is not None:
        conditions &= Q(event__cost_usd__lte=filters.max_cost)
    return queryset.filter(conditions)


def encode_cursor(log: RequestLog) -> str:
    raw = f"{log.event.occurred_at.isoformat()}|{log.event.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, _, row_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return datetime.fromisoformat(moment), int(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LogQueryError("cursor", "cursor: not a cursor this API returned") from exc


def request_log_page(
    filters: LogFilters, *, cursor: str | None = None, limit: int = 50
) -> tuple[list[RequestLog], str | None]:
    """One page of ``request_logs`` after ``cursor``, and the cursor of the next page."""
    queryset = request_logs(filters)
    if cursor:
        moment, row_id = _decode_cursor(cursor)
        queryset = queryset.filter(
            Q(event__occurred_at__lt=moment) | Q(event__occurred_at=moment, event__id__lt=row_id)
        )
    rows = list(queryset[: limit + 1])
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def request_log_by_request_id(request_id: str) -> RequestLog | None:
    return (
        RequestLog.objects.select_related("event", "body")
        .filter(request_id=request_id)
        .order_by("-occurred_at")
        .first()
    )


# --- detail -------------------------------------------------------------------------------------


def _parsed(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def media_references(value: Any) -> list[str]:
    """The media hashes a stored body refers to, in order of appearance."""
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node.startswith(MEDIA_REFERENCE):
                found.append(node[len(MEDIA_REFERENCE) :])
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return list(dict.fromkeys(found))


def tool_activity(request: Any, response: Any) -> list[dict[str, Any]]:
    """Tool calls and tool results in a request and its answer (Anthropic and OpenAI shapes)."""
    items: list[dict[str, Any]] = []

    def blocks(content: Any, where: str) -> None:
        if not isinstance(content, list):
            return
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                items.append(
                    {"where": where, "kind": "call", "id": block.get("id"),
                     "name": block.get("name"), "data": block.get("input")}
                )  # fmt: skip
            elif block.get("type") == "tool_result":
                items.append(
                    {"where": where, "kind": "result", "id": block.get("tool_use_id"),
                     "name": "", "data": block.get("content")}
                )  # fmt: skip

    def openai_message(message: Any, where: str) -> None:
        if not isinstance(message, dict):
            return
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                function = call.get("function") or {}
                items.append(
                    {"where": where, "kind": "call", "id": call.get("id"),
                     "name": function.get("name"), "data": function.get("arguments")}
                )  # fmt: skip
        if message.get("role") == "tool":
            items.append(
                {"where": where, "kind": "result", "id": message.get("tool_call_id"),
                 "name": "", "data": message.get("content")}
            )  # fmt: skip

    if isinstance(request, dict):
        for message in request.get("messages") or []:
            if isinstance(message, dict):
                blocks(message.get("content"), "request")
                openai_message(message, "request")
    if isinstance(response, dict):
        blocks(response.get("content"), "response")
        for choice in response.get("choices") or []:
            if isinstance(choice, dict):
                openai_message(choice.get("message"), "response")
    return items


@dataclass
class LogBodies:
    request_headers: dict[str, str]
    request: Any
    response: Any
    stream: str
    notes: list[str]
    media: list[str]
    tools: list[dict[str, Any]]


def request_log_bodies(log: RequestLog) -> LogBodies | None:
    """The stored (already redacted) bodies of a log, decoded; None when it has none."""
    from requestlog.models import RequestBody

    try:
        stored = log.body
    except RequestBody.DoesNotExist:
        return None
    request = _parsed(decode_body(stored.request))
    response = _parsed(decode_body(stored.response))
    return LogBodies(
        request_headers=dict(stored.request_headers or {}),
        request=request,
        response=response,
        stream=decode_body(stored.stream),
        notes=list(stored.notes or []),
        media=media_references([request, response]),
        tools=tool_activity(request, response),
    )


def log_row(log: RequestLog) -> dict[str, Any]:
    """A log and its event as one flat, JSON-ready row (API, export)."""
    event = log.event
    return {
        "request_id": log.request_id,
        "event_id": str(log.event_id),
        "occurred_at": log.occurred_at.isoformat(),
        "user_id": event.user_id,
        "access_key_id": event.access_key_id,
        "surface": log.surface,
        "provider": event.provider,
        "credential_fingerprint": log.credential_fingerprint,
        "requested_model": event.requested_model,
        "upstream_model": event.upstream_model,
        "status_code": event.status_code,
        "streamed": event.streamed,
        "client_disconnected": event.client_disconnected,
        "time_to_first_byte_ms": event.time_to_first_byte_ms,
        "latency_ms": event.latency_ms,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "cost_usd": None if event.cost_usd is None else str(event.cost_usd),
        "fallback_reason": event.fallback_reason,
        "session_id": event.session_id,
        "user_agent": log.user_agent,
        "level": log.level,
        "has_body": log.has_body,
        "attempts": log.attempts,
    }


def export_columns() -> list[str]:
    """Column names of ``log_row`` (and of the CSV export), in order."""
    return [
        "request_id", "event_id", "occurred_at", "user_id", "access_key_id", "surface",
        "provider", "credential_fingerprint", "requested_model", "upstream_model",
        "status_code", "streamed", "client_disconnected", "time_to_first_byte_ms",
        "latency_ms", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "cost_usd", "fallback_reason", "session_id", "user_agent",
        "level", "has_body", "attempts",
    ]  # fmt: skip
