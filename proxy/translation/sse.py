"""Server-sent events: encoding Anthropic events, and reading usage out of a passing stream.

- ``encode_sse`` writes one event the way Anthropic does (compact UTF-8 JSON).
- ``SSEUsageSniffer`` watches the raw bytes of an Anthropic stream as the proxy relays them,
  without changing or re-encoding a byte, and keeps what accounting needs: token usage, model,
  message id, stop reason, an ``error`` event, whether ``message_stop`` arrived. It never raises,
  whatever the upstream sends: a failure to read an event (100,000 nested brackets exhaust the
  JSON parser's recursion) is counted and logged, and the relay goes on.
- ``Usage`` / ``normalize_usage`` / ``usage_from_message`` give every path (streamed or JSON,
  Anthropic or Bedrock) one usage shape with missing counts as 0.

Pure code over bytes and dicts: no Django, no I/O (only a log line when sniffing fails).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from proxy import jsonio

logger = logging.getLogger(__name__)

USAGE_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)

# Events the sniffer parses. Everything else (content_block_delta above all, the bulk of any
# stream) is skipped by looking at the event name or the first bytes of its data line.
_PARSED_EVENTS = frozenset({"message_start", "message_delta", "error"})
# Events noted by name only.
_MESSAGE_STOP = "message_stop"
# Anthropic's data lines start with {"type":"<event>" so the type is in the first bytes; this is
# how an event without an "event:" line is recognised without parsing it.
_TYPE_PROBE_BYTES = 64
_TYPE_PROBES: tuple[tuple[str, bytes], ...] = tuple(
    (name, f'"type"{separator}"{name}"'.encode())
    for name in (*sorted(_PARSED_EVENTS), _MESSAGE_STOP)
    for separator in (":", ": ")
)

# message_start, message_delta and error events are a few hundred bytes; anything larger than
# this is not one we need and is dropped instead of buffered.
DEFAULT_MAX_EVENT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response, in Anthropic's terms (``input_tokens`` excludes the cache)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def as_token_count(value: Any) -> int:
    """Return an upstream token count as a non-negative int; null, garbage and bools are 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    return 0


def normalize_usage(raw: Mapping[str, Any] | None) -> Usage:
    """Return ``raw``'s four Anthropic usage counts as ints; missing or invalid values are 0."""
    if not isinstance(raw, Mapping):
        return Usage()
    return Usage(**{name: as_token_count(raw.get(name)) for name in USAGE_FIELDS})


def usage_from_message(body: Mapping[str, Any]) -> Usage:
    """Return the usage of a non-streamed Anthropic Messages response body."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    return normalize_usage(usage if isinstance(usage, Mapping) else None)


def encode_sse(event: str, data: Mapping[str, Any]) -> bytes:
    """Return one SSE frame: ``event: <event>``, ``data: <compact JSON>``, blank line; UTF-8."""
    return b"event: " + event.encode() + b"\ndata: " + jsonio.dumps(data) + b"\n\n"


class SSEUsageSniffer:
    """Collects usage from an Anthropic SSE stream fed to it chunk by chunk, as bytes.

    Chunks may split anywhere (inside a line, a ``\\r\\n`` or a UTF-8 sequence): only complete
    lines are looked at, and ``\\n`` never occurs inside a UTF-8 sequence. Only
    ``message_start``, ``message_delta`` and ``error`` events are JSON-parsed; lines of other
    events are discarded as they arrive. Memory is bounded by ``max_event_bytes``: a longer line
    or event is skipped. Malformed events are ignored, so sniffing never breaks the relay.

    ``feed`` and ``close`` never raise (the proxy calls them between relaying chunks, and an
    exception there would cut the client's stream): an event that cannot be read is skipped,
    and any other failure drops the partial state and counts in ``failures``; the first of a
    stream is logged.
    """

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._line = bytearray()
        self._discarding_line = False
        self._event_name: str | None = None
        self._data = bytearray()
        self._has_data = False
        self._event_too_large = False
        self._counts: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        self.model: str | None = None
        self.message_id: str | None = None
        self.stop_reason: str | None = None
        self.error: tuple[str, str] | None = None
        self.saw_message_start = False
        self.saw_message_stop = False
        self.skipped_events = 0
        self.failures = 0

    @property
    def usage(self) -> Usage:
        return Usage(**self._counts)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an unfinished line or event; never more than ``max_event_bytes``."""
        return len(self._line) + len(self._data)

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream, exactly as they were relayed. Never raises."""
        try:
            self._feed(chunk)
        except Exception as exc:
            self._failed(exc)

    def close(self) -> None:
        """Handle an event left unterminated at the end of the stream. Never raises."""
        try:
            self._close()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """Forget the partial line and event (they may be what failed) and carry on."""
        self.failures += 1
        self._line.clear()
        self._data.clear()
        self._discarding_line = False
        self._event_name = None
        self._has_data = False
        self._event_too_large = False
        if self.failures == 1:
            logger.warning(
                "usage sniffer: could not read the stream (%s: %.200s); relaying it on, "
                "its usage may be incomplete",
                type(exc).__name__,
                exc,
            )

    def _feed(self, chunk: bytes) -> None:
        start = 0
        end = len(chunk)
        while start < end:
            newline = chunk.find(b"\n", start)
            if newline == -1:
                self._add_partial(chunk, start, end)
                return
            self._add_partial(chunk, start, newline)
            if self._discarding_line:
                self._discarding_line = False
            else:
                line = bytes(self._line)
                try:
                    self._handle_line(line[:-1] if line.endswith(b"\r") else line)
                except Exception as exc:  # this line's event is lost, not the rest of the chunk
                    self._failed(exc)
            self._line.clear()
            start = newline + 1

    def _close(self) -> None:
        if self._line and not self._discarding_line:
            line = bytes(self._line)
            self._handle_line(line[:-1] if line.endswith(b"\r") else line)
        self._line.clear()
        self._discarding_line = False
        self._dispatch()

    def _add_partial(self, chunk: bytes, start: int, end: int) -> None:
        if self._discarding_line or start == end:
            return
        # A data line of an event we do not parse is dropped as soon as its first five bytes
        # are seen, before more of it is copied.
        if self._event_name is not None and self._event_name not in _PARSED_EVENTS:
            have = len(self._line)
            if (not have and chunk.startswith(b"data:", start, end)) or (
                0 < have < 5 and bytes(self._line) + chunk[start : start + 5 - have] == b"data:"
            ):
                self._line.clear()
                self._discarding_line = True
                self._has_data = True
                return
        if self.buffered_bytes + (end - start) > self._max_event_bytes:
            self._line.clear()
            self._data.clear()
            self._discarding_line = True
            self._event_too_large = True
            return
        self._line += memoryview(chunk)[start:end]

    def _handle_line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(b"data:"):
            self._handle_data(line[6:] if line.startswith(b"data: ") else line[5:])
        elif line.startswith(b"event:"):
            self._event_name = line[6:].strip().decode("utf-8", "replace")
        # Comments (":...") and other fields (id:, retry:) carry nothing we need.

    def _handle_data(self, value: bytes) -> None:
        self._has_data = True
        if self._event_too_large:
            return
        if self._event_name is None:
            self._event_name = self._probe_type(value)
        if self._event_name not in _PARSED_EVENTS:
            return
        if self._data:
            self._data += b"\n"
        self._data += value
        if len(self._data) > self._max_event_bytes:
            self._data.clear()
            self._event_too_large = True

    @staticmethod
    def _probe_type(value: bytes) -> str:
        head = value[:_TYPE_PROBE_BYTES]
        for name, probe in _TYPE_PROBES:
            if probe in head:
                return name
        return ""

    def _dispatch(self) -> None:
        name, data = self._event_name, bytes(self._data)
        has_data, too_large = self._has_data, self._event_too_large
        self._event_name = None
        self._data.clear()
        self._has_data = False
        self._event_too_large = False
        if too_large:
            self.skipped_events += 1
            return
        if not has_data:
            return
        if name == _MESSAGE_STOP:
            self.saw_message_stop = True
            return
        if name not in _PARSED_EVENTS:
            return
        try:
            payload = jsonio.loads(data)
            if isinstance(payload, dict):
                self._apply(str(payload.get("type") or name), payload)
        except ValueError:
            self.skipped_events += 1
        except Exception as exc:
            # RecursionError on deeply nested data, and whatever else an odd event may cause:
            # this event is lost to accounting, the rest of the stream is not.
            self.skipped_events += 1
            self._failed(exc)

    def _apply(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type == "message_start":
            message = payload.get("message")
            if not isinstance(message, dict):
                return
            self.saw_message_start = True
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            if isinstance(message.get("id"), str):
                self.message_id = message["id"]
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._counts = normalize_usage(usage).as_dict()
        elif event_type == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self.stop_reason = str(delta["stop_reason"])
            usage = payload.get("usage")
            if isinstance(usage, dict):
                merge_delta_usage(self._counts, usage)
        elif event_type == "error":
            error = payload.get("error")
            if isinstance(error, dict):
                self.error = (str(error.get("type") or "api_error"), str(error.get("message", "")))
        elif event_type == _MESSAGE_STOP:
            self.saw_message_stop = True


def merge_delta_usage(counts: dict[str, int], usage: Mapping[str, Any]) -> None:
    """Fold a ``message_delta`` usage into ``counts`` the way Anthropic's SDK does.

    Delta counts are cumulative totals: ``output_tokens`` replaces the running value, and the
    input and cache counts replace it only when present and not null.
    """
    if usage.get("output_tokens") is not None:
        counts["output_tokens"] = as_token_count(usage["output_tokens"])
    for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        if usage.get(name) is not None:
            counts[name] = as_token_count(usage[name])
