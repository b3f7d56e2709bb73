"""What the proxy hands to the request log, and how the writer thread turns it into rows.

On the response path (``proxy.context.ProxyContext``) capture costs references only: the
request body and headers the proxy already holds, and a ``ResponseTap`` that keeps references
to the response chunks the client was sent, up to a cap. ``LogCapture`` carries them with the
usage record through the usage writer's queue.

In the writer thread (or wherever a record is spooled), ``log_prepare`` does the work: media
out of the bodies into the media store, redaction of every string, reassembly of a streamed
answer, truncation with a marker, compression. The raw stream kept beside a reassembled answer
refers to the answer's audio too, rather than holding it a second time. The result is a plain
JSON-able dict — the only form that is ever written to the spool or the database, so nothing
unredacted reaches either.

Memory is bounded twice: per request by the tap's cap, and per process by ``_QUEUE_BUDGET``
bytes of bodies waiting for the writer; a request arriving over budget is logged without its
bodies (and says so).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from proxy import jsonio
from requestlog.media import media_extract
from requestlog.reassembly import reassemble, spoken_answer_references, stream_audio_replaced
from requestlog.redaction import MASK, Redactor, holds_any, redactor

TRUNCATED_MARKER = "…[truncated by the gateway]"
NOT_JSON = "not_json"
# Bodies shorter than this are stored without compression (see _encode).
SMALL_BODY_BYTES = 1024
# Bodies of all requests waiting for the writer in one process, at most.
_QUEUE_BUDGET = 256 * 1024 * 1024

_budget_lock = threading.Lock()
_queued_bytes = 0


class ResponseTap:
    """References to the chunks of an answer, up to ``cap`` bytes; later chunks are counted
    but not kept."""

    __slots__ = ("cap", "chunks", "kept", "truncated")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False

    def append(self, chunk: bytes) -> None:
        # Runs for every chunk of every logged stream: one comparison when under the cap.
        if self.kept < self.cap:
            self.chunks.append(chunk)
            self.kept += len(chunk)
        else:
            self.truncated = True

    def content(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(slots=True)
class LogCapture:
    """A request's log data as the proxy gathered it (not redacted yet: never serialized)."""

    level: str
    surface: str = ""
    user_agent: str = ""
    credential_fingerprint: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    streamed: bool = False
    request_body: bytes | None = None
    request_headers: dict[str, str] | None = None
    response: ResponseTap | None = None
    reserved: int = 0
    dropped: bool = False


def tap_cap() -> int:
    """How much of an answer a tap keeps: enough for the stored body and the raw stream."""
    return max(settings.GATEWAY_LOG_BODY_MAX_BYTES, settings.GATEWAY_LOG_STREAM_MAX_BYTES) + 4096


def reserve(capture: LogCapture) -> None:
    """Count the capture's bodies against the process budget, or drop them when over it."""
    global _queued_bytes
    size = len(capture.request_body or b"") + (capture.response.kept if capture.response else 0)
    with _budget_lock:
        if _queued_bytes + size > _QUEUE_BUDGET:
            capture.request_body = None
            capture.request_headers = None
            capture.response = None
            capture.dropped = True
            return
        _queued_bytes += size
    capture.reserved = size


def release(capture: LogCapture) -> None:
    global _queued_bytes
    if capture.reserved:
        with _budget_lock:
            _queued_bytes -= capture.reserved
        capture.reserved = 0


def queued_bytes() -> int:
    return _queued_bytes


# --- preparation (writer thread) ----------------------------------------------------------------


def _cut_clean(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters without ending inside a token: a secret cut in
    half would no longer match its pattern, so the unfinished word is dropped."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    stop = len(cut)
    while stop > 0 and (cut[stop - 1].isalnum() or cut[stop - 1] in "_-.+/=@~"):
        stop -= 1
    return cut[:stop] + TRUNCATED_MARKER


def _encode(text: str) -> bytes:
    """A body's stored text (JSON or not), compressed: the column's own form. A log written to
    the spool carries it as base64 text (usage.recording.UsageRecord.to_json).

    Level 1, not zlib's default 6: the writer shares the worker's core, and on a 115 KB Claude
    Code request level 1 takes 1.1 ms instead of 3.6 ms for 37 KB stored instead of 31 KB. The
    window (and the hash table) no larger than the body needs: zlib's default state is 256 KB,
    allocated and cleared for every body, which cost 6 to 70 µs (depending on the allocator's
    state) to compress a 300-byte body. A body under SMALL_BODY_BYTES is stored, not
    compressed (level 0, still zlib's format): below 1 KB compressing saved under 30 bytes per
    µs of the writer's CPU (a 562-byte answer: 251 bytes for 9 µs), against 50 at 2 KB and
    90-120 from 8 KB up."""
    data = text.encode("utf-8", "replace")
    window_bits = min(15, max(9, (len(data) - 1).bit_length()))
    level = 0 if len(data) < SMALL_BODY_BYTES else 1
    compressor = zlib.compressobj(level, zlib.DEFLATED, window_bits, max(1, window_bits - 7))
    return compressor.compress(data) + compressor.flush()


def body_bytes(prepared: bytes | str) -> bytes:
    """A prepared body's column value: its compressed bytes, also when a log read back from
    the spool carries them as base64 text."""
    if isinstance(prepared, str):
        return base64.b64decode(prepared) if prepared else b""
    return prepared


def decode_body(blob: bytes | memoryview | str | None) -> str:
    """The stored text of a body column (compressed UTF-8), for viewers."""
    if not blob:
        return ""
    if isinstance(blob, memoryview):
        blob = bytes(blob)
    return zlib.decompress(body_bytes(blob)).decode("utf-8", "replace")


# Every kind of inline medium media_extract finds leaves one of these in the body's text: a
# base64 source, a data: URL, an "audio" object or input_audio, Gemini's inline data (an escape
# \u could spell any of them; OpenAI's "audio_tokens" is none of them). A body without any is
# not walked: most bodies carry no medium, and the walk costs more than these searches.
_MEDIA_MARKERS = ("base64", "data:", '"audio"', "input_audio", "inlineData", "inline_data", "\\u")


def _body(
    raw: bytes,
    *,
    red: Redactor,
    limit: int,
    notes: list[str],
    what: str,
    media: list[dict[str, Any]],
) -> tuple[Any, str]:
    """A body as it is stored: JSON with media replaced and strings redacted, or redacted text;
    cut to ``limit`` characters with a marker. Returns the value and its stored text (the JSON
    is encoded once: its length decides the cut, and the text is what is compressed)."""
    text = raw.decode("utf-8", "replace")
    try:
        parsed = jsonio.loads(text)
    except (ValueError, RecursionError):
        parsed = None
        notes.append(f"{what}_{NOT_JSON}")
    if parsed is not None and not isinstance(parsed, str | int | float | bool):
        if holds_any(text, _MEDIA_MARKERS):
            parsed, found = media_extract(parsed)  # may change the body, found or not
            media.extend(found)
            as_sent = False
        else:
            as_sent = red.json_text_clean(text)
        if as_sent:
            # Nothing to mask or replace: the client's own text is what would be stored (one
            # scan of it instead of a walk of every string and an encoding of the copy).
            redacted, encoded = parsed, text
        else:
            redacted = red.json(parsed)
            encoded = jsonio.dumps(redacted).decode()
        if len(encoded) <= limit:
            return redacted, encoded
        notes.append(f"{what}_truncated")
        cut = _cut_clean(encoded, limit)
        return cut, cut
    cleaned = red.text(text)
    if len(cleaned) > limit:
        notes.append(f"{what}_truncated")
    cut = _cut_clean(cleaned, limit)
    return cut, cut


def _redacted(value: Any, red: Redactor) -> Any:
    """A JSON value redacted: the value itself when its JSON text holds nothing to mask (an
    encoding and a scan of the text cost a fraction of a walk that copies every string)."""
    if red.json_text_clean(jsonio.dumps(value).decode()):
        return value
    return red.json(value)


def log_prepare(capture: LogCapture, red: Redactor | None = None) -> dict[str, Any]:
    """The capture redacted and encoded: what the spool and the database get."""
    red = red or redactor()
    prepared: dict[str, Any] = {
        "level": capture.level,
        "surface": capture.surface[:16],
        "user_agent": red.text(capture.user_agent)[:300],
        "credential_fingerprint": capture.credential_fingerprint[:16],
        "attempts": _redacted(capture.attempts, red),
        "body": None,
    }
    try:
        if capture.level == "full":
            prepared["body"] = _prepare_bodies(capture, red)
    finally:
        release(capture)
    return prepared


def _prepare_bodies(capture: LogCapture, red: Redactor) -> dict[str, Any]:
    limit = settings.GATEWAY_LOG_BODY_MAX_BYTES
    notes: list[str] = []
    media: list[dict[str, Any]] = []
    if capture.dropped:
        notes.append("bodies_dropped_writer_behind")
    headers = red.headers(capture.request_headers or {})
    request = ""
    if capture.request_body is not None:
        _, request = _body(
            capture.request_body, red=red, limit=limit, notes=notes, what="request", media=media
        )
    response = ""
    stream = ""
    tap = capture.response
    if tap is not None:
        raw = tap.content()
        if tap.truncated:
            notes.append("response_capture_truncated")
        if capture.streamed:
            message = reassemble(capture.surface, raw)
            if message is not None:
                answer, response = _body(
                    jsonio.dumps(message),
                    red=red,
                    limit=limit,
                    notes=notes,
                    what="response",
                    media=media,
                )
                if capture.surface == "chat" and media:
                    spoken = spoken_answer_references(answer)
                    if spoken:
                        raw = stream_audio_replaced(raw, spoken)
            stream_limit = settings.GATEWAY_LOG_STREAM_MAX_BYTES
            stream_text = red.text(raw.decode("utf-8", "replace"))
            if len(stream_text) > stream_limit:
                notes.append("stream_truncated")
            stream = _cut_clean(stream_text, stream_limit)
        else:
            _, response = _body(
                raw, red=red, limit=limit, notes=notes, what="response", media=media
            )
    return {
        "request_headers": headers,
        "request": _encode(request),
        "response": _encode(response) if response else b"",
        "stream": _encode(stream) if stream else b"",
        "notes": notes,
        "media": list({item["sha256"]: item for item in media}.values()),
    }


# Keyed by the secret's hash, not the secret: a client's own key must not outlive its request.
_fingerprints: dict[int, str] = {}
_FINGERPRINTS_KEPT = 4096


def credential_fingerprint(secret: str) -> str:
    """A short, stable, one-way name of a credential: enough to tell credentials apart.
    Remembered per process (a handful of credentials answer nearly every request)."""
    if not secret:
        return ""
    key = hash(secret)
    known = _fingerprints.get(key)
    if known is None:
        known = hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:12]
        if len(_fingerprints) >= _FINGERPRINTS_KEPT:
            _fingerprints.clear()
        _fingerprints[key] = known
    return known


__all__ = [
    "MASK",
    "LogCapture",
    "ResponseTap",
    "credential_fingerprint",
    "decode_body",
    "log_prepare",
]
