"""Programmable faults of the fake upstream, and the per-upstream FIFO queues that hold them.

A fault is taken from its upstream's queue ("anthropic" or "bedrock") by the next request it
matches; when the queue has no match, the queue's default fault (if any) applies, and otherwise the
request is answered normally. Every fault may wait `delay` seconds before the response headers
(slow first byte) and may be limited to one `endpoint` (`messages`, `count_tokens`, `models`,
`converse`, `converse-stream`, `invoke`, `invoke-with-response-stream`, `count-tokens`). Mid-stream
faults only match streaming requests.

This module also renders the error bodies each upstream sends, so the fake's HTTP errors look like
the real ones (Anthropic error JSON with `request-id`; Bedrock `{"message":...}` with
`x-amzn-ErrorType`).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

UPSTREAMS = ("anthropic", "bedrock")
# The fake provider upstreams (fake_openai.py, fake_gemini.py, fake_ollama.py), one queue each.
PROVIDER_UPSTREAMS = ("openai", "gemini", "ollama")

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

BEDROCK_EXCEPTIONS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}

# botocore splits x-amzn-ErrorType at ":" and keeps the part before it.
BEDROCK_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


@dataclass(kw_only=True)
class Fault:
    """Base of all faults: an optional wait before the response headers, an optional endpoint."""

    delay: float = 0.0
    endpoint: str | None = None

    streaming_only = False

    def matches(self, *, endpoint: str, streaming: bool) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return streaming or not self.streaming_only


@dataclass(kw_only=True)
class Delay(Fault):
    """Answer normally, but only after `delay` seconds (a slow first byte)."""


@dataclass(kw_only=True)
class HttpError(Fault):
    """An HTTP error in the upstream's own error format.

    `error_type` is the Anthropic error type or the Bedrock exception name (the OpenAI error
    `type`, the Google `status` such as `RESOURCE_EXHAUSTED`); by default it follows the status.
    `code` is OpenAI's error `code` (e.g. `insufficient_quota`). `body` replaces the rendered body
    entirely. `headers` are added to the response
    (e.g. `retry-after`, `anthropic-ratelimit-unified-5h-reset`, `request-id`) and override the
    defaults.
    """

    status: int = 500
    error_type: str | None = None
    message: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(kw_only=True)
class DropConnection(Fault):
    """Close the connection without sending any response."""


@dataclass(kw_only=True)
class StreamCut(Fault):
    """Send `after_events` events of a stream, then close the connection mid-body."""

    after_events: int = 1

    streaming_only = True


@dataclass(kw_only=True)
class AnthropicStreamError(Fault):
    """Send `after_events` SSE events, then `event: error` with this error, then end the stream."""

    after_events: int = 1
    error_type: str = "overloaded_error"
    message: str = "Overloaded"

    streaming_only = True


@dataclass(kw_only=True)
class BedrockStreamException(Fault):
    """Send `after_events` frames, then a `:message-type: exception` frame, then end the stream.

    `exception_type` is the stream's camelCase name (`throttlingException`,
    `modelStreamErrorException`, `validationException`, `serviceUnavailableException`,
    `internalServerException`). `original_status_code` is added for `modelStreamErrorException`.
    """

    after_events: int = 1
    exception_type: str = "throttlingException"
    message: str = "Too many requests, please wait before trying again."
    original_status_code: int | None = None

    streaming_only = True

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": self.message}
        if self.original_status_code is not None:
            payload["originalStatusCode"] = self.original_status_code
            payload["originalMessage"] = self.message
        return payload


@dataclass(kw_only=True)
class ProviderStreamError(Fault):
    """Send `after_events` stream events, then the provider's in-stream error, then end the stream:
    `data: {"error": {...}}` (OpenAI), an SSE `{"error": {"code", "message", "status"}}`
    (Gemini), an `{"error": "..."}` line (Ollama). `status` picks the default type and Google
    status; `error_type` and `code` override them where the format has them.
    """

    after_events: int = 1
    status: int = 500
    message: str = "The server had an error while processing your request."
    error_type: str | None = None
    code: str | None = None

    streaming_only = True


MidStreamFault = StreamCut | AnthropicStreamError | BedrockStreamException | ProviderStreamError

_UPSTREAM_ONLY: dict[type[Fault], str] = {
    AnthropicStreamError: "anthropic",
    BedrockStreamException: "bedrock",
}


def check_fault_for(upstream: str, fault: Fault) -> None:
    """Refuse faults an upstream cannot produce (e.g. an eventstream exception on Anthropic)."""
    known = UPSTREAMS + PROVIDER_UPSTREAMS
    if upstream not in known:
        raise ValueError(f"unknown upstream {upstream!r}; expected one of {known}")
    if isinstance(fault, ProviderStreamError) and upstream not in PROVIDER_UPSTREAMS:
        raise ValueError(f"ProviderStreamError is a provider fault, not a {upstream} one")
    only = _UPSTREAM_ONLY.get(type(fault))
    if only is not None and only != upstream:
        raise ValueError(f"{type(fault).__name__} is a {only} fault, not a {upstream} one")


class FaultQueue:
    """FIFO of faults for one upstream, plus a default applied when nothing queued matches.

    Written by the test thread and read by the server's event loop, hence the lock.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._queue: deque[Fault] = deque()
        self._default: Fault | None = None
        self._lock = threading.Lock()

    def push(self, *faults: Fault) -> None:
        for fault in faults:
            check_fault_for(self.upstream, fault)
        with self._lock:
            self._queue.extend(faults)

    def set_default(self, fault: Fault | None) -> None:
        if fault is not None:
            check_fault_for(self.upstream, fault)
        with self._lock:
            self._default = fault

    @property
    def default(self) -> Fault | None:
        return self._default

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._default = None

    def take(self, *, endpoint: str, streaming: bool) -> Fault | None:
        """Remove and return the first queued fault matching this request, else the default."""
        with self._lock:
            for fault in self._queue:
                if fault.matches(endpoint=endpoint, streaming=streaming):
                    self._queue.remove(fault)
                    return fault
            default = self._default
        if default is not None and default.matches(endpoint=endpoint, streaming=streaming):
            return default
        return None


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def anthropic_error_body(*, error_type: str, message: str, request_id: str) -> bytes:
    return _json_bytes(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def render_http_error(
    fault: HttpError, *, upstream: str, request_id: str
) -> tuple[bytes, list[tuple[str, str]]]:
    """Body and headers (without content-length) of an HTTP error fault for `upstream`."""
    headers: dict[str, str] = {"content-type": "application/json"}
    if upstream == "anthropic":
        error_type = fault.error_type or ANTHROPIC_ERROR_TYPES.get(fault.status, "api_error")
        message = fault.message or f"Fake upstream {error_type}"
        body = anthropic_error_body(error_type=error_type, message=message, request_id=request_id)
        headers["request-id"] = request_id
    else:
        exception = fault.error_type or BEDROCK_EXCEPTIONS.get(
            fault.status, "InternalServerException"
        )
        message = fault.message or f"Fake upstream {exception}"
        body = _json_bytes({"message": message})
        headers["x-amzn-ErrorType"] = exception + BEDROCK_ERROR_TYPE_SUFFIX
        headers["x-amzn-RequestId"] = request_id
    # Scripted headers win, so a test can pin request-id or add retry-after.
    lowered = {name.lower(): name for name in headers}
    for name, value in fault.headers.items():
        headers.pop(lowered.get(name.lower(), name), None)
        headers[name] = value
    if fault.body is not None:
        body = fault.body
    return body, list(headers.items())
