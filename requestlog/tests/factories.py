"""Request logs for tests, written the way the proxy's writer writes them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from requestlog.capture import LogCapture, ResponseTap
from requestlog.models import RequestLog
from usage import recording
from usage.recording import UsageRecord


def logged_request(
    *,
    level: str = "full",
    body: Any = None,
    answer: Any = None,
    headers: dict[str, str] | None = None,
    surface: str = "messages",
    streamed: bool = False,
    occurred_at: datetime | None = None,
    **event: Any,
) -> RequestLog:
    """One request written through the usage writer's batch path; returns its log."""
    tap = None
    if answer is not None:
        tap = ResponseTap(10_000_000)
        tap.append(answer if isinstance(answer, bytes) else json.dumps(answer).encode())
    capture = LogCapture(
        level=level,
        surface=surface,
        user_agent="claude-cli/2.1.0",
        attempts=[
            {"provider": event.get("provider", "anthropic"), "model": "m", "credential": "c0ffee",
             "outcome": "answered", "status": event.get("status_code", 200), "latency_ms": 12}
        ],
        streamed=streamed,
        request_body=None if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode()
        ),
        request_headers=headers or {},
        response=tap,
    )  # fmt: skip
    values: dict[str, Any] = {
        "provider": "anthropic",
        "requested_model": "claude-sonnet-4-6",
        "request_id": f"gwreq_{id(capture):x}",
        "streamed": streamed,
        "log": capture,
    }
    if occurred_at is not None:
        values["occurred_at"] = occurred_at
    values.update(event)
    record = UsageRecord(**values)
    recording._write_batch([record])
    return RequestLog.objects.select_related("event").get(event_id=record.event_id)
