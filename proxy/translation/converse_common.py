"""Constants and small helpers shared by the Converse request, response and stream translators.

Everything that both directions must agree on lives here: the stop-reason map, placeholder texts,
Bedrock's identifier patterns and the tool name / tool use ID sanitisers (the same function must
run on ``tool_use`` and ``tool_result`` blocks, or Bedrock cannot pair them), and the usage
mapping, plus small readers for untrusted JSON. No Django, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

JSON = dict[str, Any]

# Bedrock stopReason -> Anthropic stop_reason. Guardrail and content-filter stops are what
# Anthropic calls a refusal. The two "malformed" values have no Anthropic counterpart; we end the
# turn normally so the client keeps what was generated instead of losing the whole answer.
STOP_REASONS: dict[str, str] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "model_context_window_exceeded": "model_context_window_exceeded",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
    "malformed_model_output": "end_turn",
    "malformed_tool_use": "end_turn",
}
# Used when Bedrock sends a value newer than this table, or the stream ends without messageStop.
DEFAULT_STOP_REASON = "end_turn"

# Converse does not report which stop sequence matched; Claude on Bedrock returns it when asked.
STOP_SEQUENCE_FIELD = "stop_sequence"
STOP_SEQUENCE_FIELD_PATHS = ["/" + STOP_SEQUENCE_FIELD]

# Bedrock rejects blank text and empty content lists; Anthropic accepts both. These stand in.
EMPTY_TURN_TEXT = "(no content)"
EMPTY_TOOL_RESULT_TEXT = "(no output)"
# Bedrock: "A text block must be included when using documents".
DOCUMENT_ONLY_TEXT = "(see the attached document)"
# URL and Files-API sources are not fetched (see converse._image); the model is told instead.
UNFETCHED_SOURCE_TEXT = (
    "[{kind} not included: {reference} is a {source_type} source, which this gateway does not"
    " fetch for this model]"
)
UNSUPPORTED_MEDIA_TEXT = "[{kind} not included: media type {media_type} is not supported here]"

# Bedrock refuses a conversation with toolUse/toolResult blocks unless toolConfig is defined.
STUB_TOOL_NAME = "unused_placeholder_tool"
STUB_TOOL: JSON = {
    "toolSpec": {
        "name": STUB_TOOL_NAME,
        "description": "Placeholder so that earlier tool calls stay valid. Never call it.",
        "inputSchema": {"json": {"type": "object", "properties": {}}},
    }
}

MAX_CACHE_POINTS = 4
CACHE_TTLS = frozenset({"5m", "1h"})

# Anthropic requires budget_tokens >= 1024 and < max_tokens for enabled thinking.
MIN_THINKING_BUDGET = 1024

IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS: dict[str, str] = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/html": "html",
    "text/markdown": "md",
}
DOCUMENT_NAME_MAX = 200
DEFAULT_DOCUMENT_NAME = "document"

TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_USE_ID_RE = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_TOOL_NAME_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_TOOL_USE_ID_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_.:-]")
# Names/IDs we must rewrite keep a readable prefix plus a hash of the original, so two different
# originals never collide and the same original always maps to the same value.
_SANITISED_PREFIX_LEN = 47
_SANITISED_HASH_LEN = 16


def _sanitise(value: str, valid: re.Pattern[str], bad_chars: re.Pattern[str]) -> str:
    if valid.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:_SANITISED_HASH_LEN]
    prefix = bad_chars.sub("_", value)[:_SANITISED_PREFIX_LEN]
    return f"{prefix}_{digest}"


def sanitise_tool_name(name: str) -> str:
    """Return ``name`` if Bedrock accepts it, else a stable name matching its pattern."""
    return _sanitise(name, TOOL_NAME_RE, _TOOL_NAME_BAD_CHARS)


def sanitise_tool_use_id(tool_use_id: str) -> str:
    """Return the ID unchanged if Bedrock accepts it, else a stable ID matching its pattern."""
    return _sanitise(tool_use_id, TOOL_USE_ID_RE, _TOOL_USE_ID_BAD_CHARS)


def map_stop_reason(bedrock_stop_reason: str | None) -> str:
    if not isinstance(bedrock_stop_reason, str):
        return DEFAULT_STOP_REASON
    return STOP_REASONS.get(bedrock_stop_reason, DEFAULT_STOP_REASON)


def stop_sequence_from(additional_fields: Any) -> str | None:
    """The matched stop sequence from ``additionalModelResponseFields``, if Bedrock sent one."""
    if isinstance(additional_fields, dict):
        value = additional_fields.get(STOP_SEQUENCE_FIELD)
        if isinstance(value, str):
            return value
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_converse(usage: Any) -> JSON:
    """Bedrock ``TokenUsage`` -> Anthropic ``usage``.

    Bedrock's ``inputTokens`` already excludes cache reads and writes, exactly like Anthropic's
    ``input_tokens``, so it maps 1:1 (adding the cache buckets again would double count).
    """
    usage = usage if isinstance(usage, dict) else {}
    result: JSON = {
        "input_tokens": _count(usage.get("inputTokens")),
        "output_tokens": _count(usage.get("outputTokens")),
        "cache_creation_input_tokens": _count(usage.get("cacheWriteInputTokens")),
        "cache_read_input_tokens": _count(usage.get("cacheReadInputTokens")),
    }
    details = usage.get("cacheDetails")
    if isinstance(details, list) and details:
        by_ttl = {"5m": 0, "1h": 0}
        for detail in details:
            if isinstance(detail, dict) and detail.get("ttl") in by_ttl:
                by_ttl[detail["ttl"]] += _count(detail.get("inputTokens"))
        result["cache_creation"] = {
            "ephemeral_5m_input_tokens": by_ttl["5m"],
            "ephemeral_1h_input_tokens": by_ttl["1h"],
        }
    return result


def redacted_data(value: Any) -> str:
    """Anthropic ``redacted_thinking.data`` for a ``redactedContent`` blob.

    On the JSON wire the blob already is base64 text and is returned verbatim (it must round-trip
    unchanged); botocore-parsed events hand over raw bytes, which are encoded.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return ""


def join_redacted_chunks(chunks: list[Any]) -> str:
    """One ``redacted_thinking.data`` from the ``redactedContent`` deltas of one stream block.

    Each delta is a separately base64-encoded blob, so several chunks are decoded, joined and
    encoded again; a single chunk (the usual case) is passed through verbatim.
    """
    if len(chunks) == 1:
        return redacted_data(chunks[0])
    raw = bytearray()
    for chunk in chunks:
        if isinstance(chunk, bytes | bytearray):
            raw += chunk
            continue
        try:
            raw += base64.b64decode(str(chunk), validate=True)
        except binascii.Error:
            # Not base64 after all: keep the text as it came rather than corrupting it.
            return "".join(redacted_data(c) for c in chunks)
    return base64.b64encode(bytes(raw)).decode("ascii")


# Readers for untrusted JSON: a field of the wrong type reads as empty instead of raising, so an
# odd client body degrades to a smaller request rather than a 500.


def as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dicts(value: Any) -> list[JSON]:
    return [item for item in as_list(value) if isinstance(item, dict)]
