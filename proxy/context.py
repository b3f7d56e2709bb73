"""Per-request state of a proxied call: identity, timings, and the usage event at the end.

Also what the request log needs (requestlog): the surface, the client, each attempt of the
plan, and at level ``full`` references to the request body and a tap on the answer's bytes.
Capture holds references only; redaction, reassembly and compression happen in the usage
writer thread. At level ``off`` nothing beyond the usage event is kept.

Also the gateway's own responses (Anthropic-shaped errors, JSON bodies) with the gateway headers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse

from accounts.keycache import KeyMetadata
from gateway_project.observability import (
    FALLBACKS,
    FIRST_BYTE,
    LATENCY,
    REQUESTS,
    TOKENS,
    request_id_var,
)
from proxy import jsonio
from proxy.translation.errors import error_body
from proxy.translation.sse import Usage, encode_sse
from requestlog.capture import LogCapture, ResponseTap, credential_fingerprint, reserve, tap_cap
from requestlog.levels import FULL, OFF, log_level_for
from usage.recording import UsageRecord, record_usage_event

PROVIDER_HEADER = "x-gateway-provider"
FALLBACK_REASON_HEADER = "x-gateway-fallback-reason"
NO_FALLBACK_HEADER = "x-gateway-no-fallback-reason"
FALLBACK_ERROR_HEADER = "x-gateway-fallback-error"
REQUEST_ID_HEADER = "x-gateway-request-id"
SESSION_HEADER = "x-claude-code-session-id"


# Ends a stream whose upstream failed after bytes reached the client: no fallback is possible
# any more, and SDKs understand an error event where a truncated stream would confuse them.
STREAM_INTERRUPTED = encode_sse(
    "error", error_body("api_error", "The upstream stream was interrupted.")
)


def new_request_id() -> str:
    """A fresh request id, also set as the log context of the running request."""
    request_id = f"gwreq_{uuid.uuid4().hex[:24]}"
    request_id_var.set(request_id)
    return request_id


@dataclass
class ProxyContext:
    metadata: KeyMetadata
    request_id: str
    session_id: str = ""
    requested_model: str = ""
    stream: bool = False
    fallback_reason: str = ""
    started: float = field(default_factory=time.perf_counter)
    first_byte_at: float | None = None
    started_wall: float = field(default_factory=time.time)
    attempting: str = "anthropic"  # the upstream being asked right now
    billable: bool = True  # False for count_tokens: no usage event
    recorded: bool = False
    # Called once by ``record`` with (provider, status, usage): governance settles the
    # request's rate-limit and budget counters with it.
    on_record: Callable[[str, int, Usage], None] | None = field(default=None, repr=False)
    # The request's token estimate, made once (governance.enforcement.estimate_call) and read by
    # both the routing rules and the admission: (the parsed body it was made from, estimate).
    estimate: tuple[Any, Any] | None = field(default=None, repr=False)
    # The request log (requestlog): its level for this key, and what it records besides usage.
    log_level: str = ""
    surface: str = ""
    user_agent: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    request_body: bytes | None = field(default=None, repr=False)
    request_headers: dict[str, str] | None = field(default=None, repr=False)
    # References to the answer's bytes as the client gets them; None unless logging is full.
    response_tap: ResponseTap | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.log_level:
            self.log_level = log_level_for(
                key_id=self.metadata.key_id, user_id=self.metadata.user_id
            )

    def capture_request(
        self, *, surface: str, body: bytes, headers: dict[str, str], user_agent: str
    ) -> None:
        """What the request log keeps of the request: references only, nothing copied."""
        self.surface = surface
        self.user_agent = user_agent
        if self.log_level == FULL:
            self.request_body = body
            self.request_headers = headers
            self.response_tap = ResponseTap(tap_cap())

    def tap(self, content: bytes) -> None:
        """A complete answer (or a part of a stream) as the client gets it, for the log."""
        if self.response_tap is not None:
            self.response_tap.append(content)

    def attempt_started(self, *, provider: str, model: str, credential: str) -> None:
        """A leg of the plan is being tried (``credential`` is fingerprinted, never kept)."""
        if self.log_level == OFF:
            return
        self.attempts.append(
            {
                "provider": provider,
                "model": model,
                "credential": credential_fingerprint(credential),
                "started": time.perf_counter(),
            }
        )

    def attempt_ended(self, *, outcome: str, status: int | None) -> None:
        """The leg being tried failed (``outcome`` is its reason) or answered ("answered")."""
        if not self.attempts or "outcome" in self.attempts[-1]:
            return
        attempt = self.attempts[-1]
        attempt["outcome"] = outcome
        attempt["status"] = status
        attempt["latency_ms"] = int((time.perf_counter() - attempt["started"]) * 1000)

    def _log_capture(self, status: int, disconnected: bool) -> LogCapture:
        self.attempt_ended(
            outcome="client_disconnected" if disconnected else "answered", status=status
        )
        attempts = [
            {name: value for name, value in attempt.items() if name != "started"}
            for attempt in self.attempts
        ]
        capture = LogCapture(
            level=self.log_level,
            surface=self.surface,
            user_agent=self.user_agent,
            credential_fingerprint=attempts[-1]["credential"] if attempts else "",
            attempts=attempts,
            streamed=self.stream,
            request_body=self.request_body,
            request_headers=self.request_headers,
            response=self.response_tap,
        )
        if self.log_level == FULL:
            reserve(capture)
        return capture

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()

    def gateway_headers(self, provider: str) -> dict[str, str]:
        headers = {PROVIDER_HEADER: provider, REQUEST_ID_HEADER: self.request_id}
        if self.fallback_reason:
            headers[FALLBACK_REASON_HEADER] = self.fallback_reason
        return headers

    def record(
        self,
        *,
        provider: str,
        status: int,
        usage: Usage | None = None,
        upstream_model: str = "",
        disconnected: bool = False,
        reasoning_tokens: int = 0,
    ) -> None:
        """Queue the request's one usage event (idempotent: later calls do nothing).
        ``reasoning_tokens`` is the part of the output spent reasoning, where reported."""
        if self.recorded:
            return
        self.recorded = True
        status_class = f"{status // 100}xx"
        usage = usage or Usage()
        if self.on_record is not None:
            self.on_record(provider, status, usage)
        now = time.perf_counter()
        ttfb = (
            None if self.first_byte_at is None else int((self.first_byte_at - self.started) * 1000)
        )
        latency = now - self.started
        REQUESTS.labels(provider, status_class, "true" if self.stream else "false").inc()
        LATENCY.labels(provider).observe(latency)
        if self.first_byte_at is not None:
            FIRST_BYTE.labels(provider).observe(self.first_byte_at - self.started)
        if provider == "bedrock" and self.fallback_reason:
            FALLBACKS.labels(self.fallback_reason).inc()
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_input_tokens),
            ("cache_write", usage.cache_creation_input_tokens),
        ):
            if count:
                TOKENS.labels(provider, kind).inc(count)
        if not self.billable:
            return
        log = None if self.log_level == OFF else self._log_capture(status, disconnected)
        record_usage_event(
            UsageRecord(
                provider=provider,
                user_id=self.metadata.user_id,
                access_key_id=self.metadata.key_id,
                requested_model=self.requested_model,
                upstream_model=upstream_model or self.requested_model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_input_tokens,
                cache_write_tokens=usage.cache_creation_input_tokens,
                reasoning_tokens=reasoning_tokens,
                status_code=status,
                streamed=self.stream,
                client_disconnected=disconnected,
                latency_ms=int(latency * 1000),
                time_to_first_byte_ms=ttfb,
                fallback_reason=self.fallback_reason,
                session_id=self.session_id,
                request_id=self.request_id,
                log=log,
            )
        )


def json_response(
    body: dict[str, Any] | bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    content = body if isinstance(body, bytes) else jsonio.dumps(body)
    response = HttpResponse(content, status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> HttpResponse:
    """An error the gateway itself makes, in Anthropic's shape."""
    return json_response(error_body(error_type, message), status=status, headers=headers)
