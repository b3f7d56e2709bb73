"""What the fake upstream knows about a request: its route, its record, and its stream pacing.

- `route_request` maps a method and raw path to an upstream endpoint (Bedrock model ids are
  percent-decoded from the raw path, so ARNs with `%2F` stay whole).
- `RecordedRequest` is what tests assert on: the request as received, and what became of it.
- `Pacing` is how a stream is paced; `pacing_for` reads the per-request overrides (headers or a
  `[[fake text_deltas=N delta_interval_ms=D]]` marker in the body).

Pure data and parsing: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from proxy.testing.faults import Fault

BEDROCK_ACTIONS = frozenset(
    {"converse", "converse-stream", "invoke", "invoke-with-response-stream", "count-tokens"}
)
BEDROCK_STREAMING_ACTIONS = frozenset({"converse-stream", "invoke-with-response-stream"})
ANTHROPIC_ROUTES = {
    ("POST", "/v1/messages"): "messages",
    ("POST", "/v1/messages/count_tokens"): "count_tokens",
    ("GET", "/v1/models"): "models",
}

OUTCOME_PENDING = "pending"
OUTCOME_COMPLETED = "completed"
OUTCOME_CLIENT_DISCONNECTED = "client_disconnected"
OUTCOME_SERVER_CLOSED = "server_closed"

PACING_HEADER_DELTAS = "x-fake-text-deltas"
PACING_HEADER_INTERVAL = "x-fake-delta-interval-ms"
PACING_MARKER = re.compile(r"\[\[fake ([^\]]{0,200})\]\]")
_PACING_MARKER_BYTES = re.compile(rb"\[\[fake ([^\]]{0,200})\]\]")


@dataclass(frozen=True)
class Route:
    upstream: str
    endpoint: str
    model_id: str | None = None


def route_request(method: str, raw_path: str) -> Route | None:
    """Which upstream endpoint a request is for, or None."""
    endpoint = ANTHROPIC_ROUTES.get((method, raw_path))
    if endpoint is not None:
        return Route("anthropic", endpoint)
    segments = raw_path.split("/")
    # "/model/{id}/{action}" splits into ["", "model", id, action].
    if (
        method == "POST"
        and len(segments) == 4
        and segments[1] == "model"
        and segments[2]
        and segments[3] in BEDROCK_ACTIONS
    ):
        return Route("bedrock", segments[3], unquote(segments[2]))
    return None


Headers = list[tuple[str, str]]


@dataclass(eq=False)
class RecordedRequest:
    """One request as the fake saw it, and what became of it.

    `headers` keep their order, names lowercased. Times are `time.monotonic()` values. `outcome`
    is `pending`, `completed`, `client_disconnected` (the client went away before the response
    ended; `client_disconnected_at` says when) or `server_closed` (a fault or a stop closed it).
    """

    upstream: str | None
    endpoint: str | None
    model_id: str | None
    method: str
    path: str
    raw_path: str
    query: str
    headers: Headers
    body: bytes
    client: tuple[str, int] | None
    started_at: float
    streaming: bool = False
    fault: Fault | None = None
    status: int | None = None
    events_sent: int = 0
    # Response body bytes given to the server so far: uvicorn holds a write back while the
    # previous ones fill its buffer, so for a stream of small writes the peer's reading paces it.
    body_bytes_sent: int = 0
    finished_at: float | None = None
    client_disconnected_at: float | None = None
    outcome: str = OUTCOME_PENDING

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitively."""
        wanted = name.lower()
        for header_name, value in self.headers:
            if header_name == wanted:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def abandoned(self) -> bool:
        """The client disconnected before the response was complete."""
        return self.client_disconnected_at is not None


@dataclass(frozen=True)
class Pacing:
    """Text and thinking split into `text_deltas` deltas; `delta_interval` seconds between
    consecutive delta events."""

    text_deltas: int = 4
    delta_interval: float = 0.0

    @classmethod
    def build(cls, *, text_deltas: int, delta_interval_ms: float) -> Pacing:
        return cls(
            text_deltas=positive_int(str(text_deltas), "text_deltas"),
            delta_interval=milliseconds_as_seconds(str(delta_interval_ms), "delta_interval_ms"),
        )


def positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1")
    return number


def milliseconds_as_seconds(value: str, name: str) -> float:
    try:
        milliseconds = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of milliseconds, got {value!r}") from None
    if not milliseconds >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0")
    return milliseconds / 1000


def _marker_options(text: str, pacing: Pacing) -> Pacing:
    for option in text.split():
        name, _, value = option.partition("=")
        if name == "text_deltas":
            pacing = replace(pacing, text_deltas=positive_int(value, name))
        elif name == "delta_interval_ms":
            pacing = replace(pacing, delta_interval=milliseconds_as_seconds(value, name))
        else:
            raise ValueError(f"unknown pacing option {name!r}")
    return pacing


def pacing_for(record: RecordedRequest, default: Pacing) -> Pacing:
    """The request's pacing: the default, then header overrides, then a marker in the body.

    Raises ValueError on a malformed value, which the fake answers with a 400.
    """
    pacing = default
    deltas = record.header(PACING_HEADER_DELTAS)
    if deltas is not None:
        pacing = replace(pacing, text_deltas=positive_int(deltas, PACING_HEADER_DELTAS))
    interval = record.header(PACING_HEADER_INTERVAL)
    if interval is not None:
        pacing = replace(
            pacing, delta_interval=milliseconds_as_seconds(interval, PACING_HEADER_INTERVAL)
        )
    # The marker is searched in the raw bytes: it has no characters JSON would escape.
    marker = _PACING_MARKER_BYTES.search(record.body)
    if marker is not None:
        pacing = _marker_options(marker.group(1).decode("utf-8", "replace"), pacing)
    return pacing
