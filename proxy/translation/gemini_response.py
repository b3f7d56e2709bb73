"""Gemini generateContent answers, streamed or whole, and Gemini errors -> the Anthropic hub.

- ``GeminiStreamToAnthropic`` turns ``streamGenerateContent?alt=sse`` chunks (each a whole
  GenerateContentResponse carrying only the new parts) into hub events;
  ``gemini_to_anthropic`` is the same translation over one non-streamed answer.
- ``gemini_usage`` / ``gemini_reasoning_tokens`` read ``usageMetadata``.
- ``gemini_error_to_anthropic`` maps a Google error to Anthropic's status and body;
  ``gemini_retry_after_seconds`` reads the retry delay Google puts in a 429.

Parts -> blocks:

- ``thought: true`` parts are reasoning: ``thinking`` blocks. Gemini sends thought summaries
  without a verifiable signature, so these blocks carry ``signature: ""`` unless a part's
  ``thoughtSignature`` is attached to them (below).
- text parts -> ``text`` (fragments of consecutive chunks continue the open block); blank text
  is never a block.
- a ``functionCall`` arrives whole -> one ``tool_use`` with a generated id (Gemini gives none
  that Anthropic's id pattern accepts; the request translator finds the name again by that id).
- other parts (inline images, code execution) have no Anthropic form in an answer and are dropped.

Thought signatures. Gemini puts an opaque ``thoughtSignature`` on some parts (the first function
call of a turn, or a text part) and requires it back on the same part next turn; Anthropic clients
(Claude Code) replay the assistant content they received unchanged and only keep what is in a
block. So the signature travels in a ``thinking`` block whose ``signature`` is
``"gemini:" + <thoughtSignature>``, placed right before the block of the part that carried it: it
signs the thinking block of the thoughts just before that part when one is open, otherwise it is
a thinking block of its own with empty text. A signature on a thought part stays on that thought's
block. The request side (``gemini.anthropic_to_gemini``) puts the signature back on the part of
the next non-thinking block of the same turn (or on the turn's last part when none follows), and
never sends thinking text. The ``gemini:`` prefix marks blocks that no other provider can verify:
a translator towards Anthropic or Bedrock must drop thinking blocks whose signature starts with it.
A signature on a text part arriving after that text block was opened (Gemini's streams often send
it in a last chunk with empty text) closes the text block; text after it opens a new one. A
function call's signature also rides in its tool_use id (``toolu_…__gsig_<base64url>``), for
clients that replay tool calls but drop thinking blocks (OpenAI-format clients drop reasoning); the
request side reads it back from the id when no thinking block gave one.

Stop reasons: ``STOP`` (or a stream that ended without a finish reason) with function calls ->
``tool_use``; ``STOP`` -> ``end_turn``; ``MAX_TOKENS`` -> ``max_tokens``; the safety family
(``SAFETY``, ``RECITATION``, ``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII``, ``IMAGE_*``,
``MODEL_ARMOR``) -> ``refusal``; everything else (``MALFORMED_FUNCTION_CALL``, ``OTHER``, newer
values) -> ``end_turn`` so the client keeps what was generated. A prompt blocked before any
candidate (``promptFeedback.blockReason``) is a ``refusal`` with empty content: the request was
valid, Gemini declined to answer it. Gemini does not report which stop sequence matched, so
``stop_sequence`` is always null and such stops read ``end_turn``.

Usage: ``input_tokens`` = promptTokenCount − cachedContentTokenCount + toolUsePromptTokenCount,
``cache_read_input_tokens`` = cachedContentTokenCount, ``output_tokens`` = candidatesTokenCount +
thoughtsTokenCount (Gemini bills thoughts as output, and Anthropic counts thinking in
``output_tokens``); ``gemini_reasoning_tokens`` exposes the thoughts part alone.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any

from proxy.translation.errors import (
    API_ERROR,
    INVALID_REQUEST_ERROR,
    NOT_FOUND_ERROR,
    OVERLOADED_ERROR,
    PERMISSION_ERROR,
    PROMPT_TOO_LONG,
    RATE_LIMIT_ERROR,
    TIMEOUT_ERROR,
    error_body,
    upstream_status_error,
)
from proxy.translation.hub import JSON, HubEvent
from proxy.translation.hub_stream import (
    HubStreamBuilder,
    ToolIdFactory,
    assemble_message,
    new_tool_use_id,
)
from proxy.translation.sse import Usage, as_token_count

__all__ = [
    "GEMINI_SIGNATURE_PREFIX",
    "TOOL_ID_SIGNATURE_MARK",
    "GeminiStreamToAnthropic",
    "gemini_error_to_anthropic",
    "gemini_reasoning_tokens",
    "gemini_retry_after_seconds",
    "gemini_to_anthropic",
    "gemini_usage",
    "signature_from_tool_id",
    "tool_id_with_signature",
]

GEMINI_SIGNATURE_PREFIX = "gemini:"
TOOL_ID_SIGNATURE_MARK = "__gsig_"

_REFUSAL_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


# --- usage -------------------------------------------------------------------------------------


def gemini_usage(usage_metadata: Any) -> Usage:
    """Anthropic usage counts for a Gemini ``usageMetadata`` (see the module docstring)."""
    if not isinstance(usage_metadata, Mapping):
        return Usage()
    prompt = as_token_count(usage_metadata.get("promptTokenCount"))
    cached = min(as_token_count(usage_metadata.get("cachedContentTokenCount")), prompt)
    tool_prompt = as_token_count(usage_metadata.get("toolUsePromptTokenCount"))
    output = as_token_count(usage_metadata.get("candidatesTokenCount"))
    return Usage(
        input_tokens=prompt - cached + tool_prompt,
        output_tokens=output + gemini_reasoning_tokens(usage_metadata),
        cache_read_input_tokens=cached,
    )


def gemini_reasoning_tokens(usage_metadata: Any) -> int:
    """The thinking tokens of a ``usageMetadata`` (already included in ``output_tokens``)."""
    if not isinstance(usage_metadata, Mapping):
        return 0
    return as_token_count(usage_metadata.get("thoughtsTokenCount"))


# --- answers -----------------------------------------------------------------------------------


class GeminiStreamToAnthropic:
    """Translate one ``streamGenerateContent`` answer into hub events.

    ``feed`` each parsed SSE ``data`` object; call ``finish`` when the upstream stream ends
    (normally or not): it closes what is open and emits ``message_delta`` + ``message_stop``
    exactly once. An ``{"error": {...}}`` chunk becomes an ``error`` event that ends the stream
    (``finish`` then adds nothing). Only the first candidate is read (the gateway never asks for
    more). ``new_tool_id`` makes tool_use ids (injectable for tests).
    """

    def __init__(
        self, *, model: str, message_id: str, new_tool_id: ToolIdFactory = new_tool_use_id
    ) -> None:
        self._builder = HubStreamBuilder(model=model, message_id=message_id)
        self._new_tool_id = new_tool_id
        self._finish_reason: str | None = None
        self._blocked = False
        self.reasoning_tokens = 0

    @property
    def usage(self) -> Usage:
        """Usage from the last ``usageMetadata`` seen (Gemini's counts are cumulative)."""
        return self._builder.usage

    def feed(self, chunk: JSON | list[Any]) -> list[HubEvent]:
        """Hub events for one chunk. Without ``alt=sse`` Gemini streams one JSON array of
        responses (and wraps errors in one): a list is fed element by element."""
        if isinstance(chunk, list):
            return [event for item in chunk for event in self.feed(item)]
        builder = self._builder
        if builder.done or not isinstance(chunk, Mapping):
            return []
        if "error" in chunk:
            error = chunk.get("error")
            code = error.get("code") if isinstance(error, Mapping) else None
            status = code if isinstance(code, int) and not isinstance(code, bool) else 500
            builder.error(gemini_error_to_anthropic(status, chunk)[1])
            return builder.drain()
        metadata = chunk.get("usageMetadata")
        if isinstance(metadata, Mapping):
            builder.usage = gemini_usage(metadata)
            self.reasoning_tokens = gemini_reasoning_tokens(metadata)
        builder.start()
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            self._blocked = True
        candidate = _first_candidate(chunk.get("candidates"))
        if candidate is not None:
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, Mapping) else None
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, Mapping):
                    self._part(part)
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason:
                self._finish_reason = reason
        return builder.drain()

    def finish(self) -> list[HubEvent]:
        builder = self._builder
        if not builder.done:
            builder.finish(self._stop_reason())
        return builder.drain()

    def _part(self, part: Mapping[str, Any]) -> None:
        builder = self._builder
        raw_signature = part.get("thoughtSignature")
        raw_signature = raw_signature if isinstance(raw_signature, str) else ""
        signature = GEMINI_SIGNATURE_PREFIX + raw_signature if raw_signature else ""
        text = part.get("text")
        if part.get("thought") is True:
            if isinstance(text, str):
                builder.thinking(text)
            builder.signature(signature)
            return
        builder.signature(signature)
        call = part.get("functionCall")
        if isinstance(text, str):
            builder.text(text)
        elif isinstance(call, Mapping):
            args = call.get("args")
            builder.tool_use(
                tool_id=tool_id_with_signature(self._new_tool_id(), raw_signature),
                name=str(call.get("name") or ""),
                arguments=args if isinstance(args, Mapping) else {},
            )

    def _stop_reason(self) -> str:
        reason = self._finish_reason
        if reason in _REFUSAL_REASONS or (self._blocked and not self._builder.blocks):
            return "refusal"
        if reason == "MAX_TOKENS":
            return "max_tokens"
        if self._builder.tool_calls and reason in (None, "STOP"):
            return "tool_use"
        return "end_turn"


def gemini_to_anthropic(
    response: JSON, *, model: str, message_id: str, new_tool_id: ToolIdFactory = new_tool_use_id
) -> JSON:
    """The Anthropic Message for a non-streamed GenerateContentResponse.

    An error body is not an answer: map it with ``gemini_error_to_anthropic`` instead.
    """
    if "error" in response:
        raise ValueError("a Gemini error body is not an answer: use gemini_error_to_anthropic")
    stream = GeminiStreamToAnthropic(model=model, message_id=message_id, new_tool_id=new_tool_id)
    return assemble_message([*stream.feed(response), *stream.finish()])


def tool_id_with_signature(tool_id: str, signature: str) -> str:
    """``tool_id`` carrying a function call's signature (base64url after ``__gsig_``).

    The thinking block is the signature's first carrier; this is the second, for clients that
    replay tool calls but drop thinking (OpenAI-format clients drop reasoning): every client
    sends a tool call's id back. The result keeps Anthropic's id alphabet ``[A-Za-z0-9_-]``.
    """
    if not signature:
        return tool_id
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return tool_id  # not base64: cannot be expressed in the id alphabet, the block keeps it
    return tool_id + TOOL_ID_SIGNATURE_MARK + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def signature_from_tool_id(tool_id: str) -> str | None:
    """The Gemini signature (standard base64) a ``tool_id_with_signature`` id carries, if any."""
    _, mark, encoded = tool_id.partition(TOOL_ID_SIGNATURE_MARK)
    if not mark or not encoded:
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(raw).decode() if raw else None


def _first_candidate(candidates: Any) -> Mapping[str, Any] | None:
    if not isinstance(candidates, list):
        return None
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("index", 0) in (0, None):
            return candidate
    return None


# --- errors ------------------------------------------------------------------------------------

# Google's canonical error status -> (Anthropic status, type); it wins over the HTTP status, which
# otherwise decides as for every upstream (``upstream_status_error``). UNAUTHENTICATED and
# PERMISSION_DENIED concern the gateway's own Gemini key, never the client's credential: they
# become 403, because a 401 makes Claude Code drop the user's login, which is not what failed.
# UNAVAILABLE is Gemini's "model is overloaded" and reads best as Anthropic's overload.
_BY_GOOGLE_STATUS: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, INVALID_REQUEST_ERROR),
    "FAILED_PRECONDITION": (400, INVALID_REQUEST_ERROR),
    "OUT_OF_RANGE": (400, INVALID_REQUEST_ERROR),
    "UNIMPLEMENTED": (400, INVALID_REQUEST_ERROR),
    "UNAUTHENTICATED": (403, PERMISSION_ERROR),
    "PERMISSION_DENIED": (403, PERMISSION_ERROR),
    "NOT_FOUND": (404, NOT_FOUND_ERROR),
    "RESOURCE_EXHAUSTED": (429, RATE_LIMIT_ERROR),
    "CANCELLED": (500, API_ERROR),
    "UNKNOWN": (500, API_ERROR),
    "ABORTED": (500, API_ERROR),
    "INTERNAL": (500, API_ERROR),
    "DATA_LOSS": (500, API_ERROR),
    "UNAVAILABLE": (529, OVERLOADED_ERROR),
    "DEADLINE_EXCEEDED": (504, TIMEOUT_ERROR),
}
# Gemini answers a bad or expired key with 400 INVALID_ARGUMENT and this reason.
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
# Gemini's "The input token count (N) exceeds the maximum number of tokens allowed (M)."; Claude
# Code compacts the conversation when an error says "prompt is too long".
_TOO_LONG = re.compile(r"exceeds the maximum number of tokens", re.IGNORECASE)
_DEFAULT_MESSAGE = "The Gemini API returned an error."


def gemini_error_to_anthropic(status: int, body: JSON | list[Any] | None) -> tuple[int, JSON]:
    """The Anthropic status and error body for a Gemini error answer (HTTP status + JSON body).

    The Google status name wins over the HTTP status; an invalid API key (a 400 for Google) is the
    gateway's credential problem and becomes 403 ``permission_error``. Without a Google error body
    the HTTP status decides (unknown 4xx: 400, unknown 5xx: 500).
    """
    error = _google_error(body)
    name = error.get("status")
    mapped = _BY_GOOGLE_STATUS.get(name) if isinstance(name, str) else None
    if mapped is None:
        mapped = upstream_status_error(status)
    if _error_reasons(error) & _KEY_REASONS:
        mapped = (403, PERMISSION_ERROR)
    message = error.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else _DEFAULT_MESSAGE
    if mapped[1] == INVALID_REQUEST_ERROR and _TOO_LONG.search(text):
        text = f"{PROMPT_TOO_LONG}: {text}"
    return mapped[0], error_body(mapped[1], text)


def gemini_retry_after_seconds(body: JSON | list[Any] | None) -> int | None:
    """Whole seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "37s"``), if any."""
    for detail in _details(_google_error(body)):
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", delay)
            if match:
                return max(1, math.ceil(float(match.group(1))))
    return None


def _google_error(body: Any) -> Mapping[str, Any]:
    # Streamed answers wrap the error in a one-element list.
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _details(error: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _error_reasons(error: Mapping[str, Any]) -> set[str]:
    return {str(d.get("reason")) for d in _details(error) if d.get("reason")}
