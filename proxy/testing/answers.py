"""The fake upstream's scripted answer and its renderings in every wire format.

One `ScriptedAnswer` (Anthropic content blocks, stop reason, usage) is rendered as:

- Anthropic Messages JSON and the Anthropic SSE event sequence,
- Bedrock Converse JSON and the ConverseStream event sequence,
- Bedrock InvokeModel JSON (Anthropic-shaped) and its `chunk` events with invocation metrics.

Everything here is a pure function over dicts: no I/O, no Django, no clock (callers pass ids and
latencies). Byte encoding (SSE lines, eventstream frames) lives in `fake_upstream.py` and
`eventstream.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

USAGE_COUNTERS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)

BLOCK_TYPES = ("text", "tool_use", "thinking", "redacted_thinking")

_REQUIRED_BLOCK_KEYS = {
    "text": ("text",),
    "tool_use": ("id", "name", "input"),
    "thinking": ("thinking", "signature"),
    "redacted_thinking": ("data",),
}

# Anthropic stop reasons without a Converse equivalent, and what Bedrock reports instead.
_CONVERSE_STOP_REASONS = {
    "refusal": "content_filtered",
    "pause_turn": "end_turn",
}

# Tool input JSON is streamed in this many fragments (after an empty first one, as Anthropic does).
TOOL_INPUT_FRAGMENTS = 3

StreamEvent = tuple[str, dict[str, Any]]


@dataclass(kw_only=True)
class ScriptedAnswer:
    """What the fake model answers, whatever the wire format.

    `content` holds Anthropic content blocks (`text`, `tool_use`, `thinking` with `signature`,
    `redacted_thinking`). `usage` holds Anthropic usage counters; missing counters are 0 and extra
    keys (`cache_creation`, `service_tier`) are passed through on the Anthropic side. `model=None`
    echoes the requested model. `start_usage` / `delta_usage` replace the usage carried by the
    Anthropic `message_start` / `message_delta` events (by default `message_start` carries the input
    and cache counters with `output_tokens: 1`, as Anthropic does, and `message_delta` carries all
    four counters, cumulative). `converse_stop_reason` overrides the Bedrock Converse stop reason
    (for example `guardrail_intervened`). `reasoning_tokens` is the part of `output_tokens` spent
    thinking, which the OpenAI, Gemini and Ollama renderings report separately (Anthropic does not).
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    start_usage: dict[str, Any] | None = None
    delta_usage: dict[str, Any] | None = None
    converse_stop_reason: str | None = None
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for position, block in enumerate(self.content):
            block_type = block.get("type")
            if block_type not in _REQUIRED_BLOCK_KEYS:
                raise ValueError(f"content[{position}]: unsupported block type {block_type!r}")
            missing = [key for key in _REQUIRED_BLOCK_KEYS[block_type] if key not in block]
            if missing:
                raise ValueError(f"content[{position}] ({block_type}) lacks {', '.join(missing)}")

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> ScriptedAnswer:
        """A one-text-block answer."""
        return cls(content=[{"type": "text", "text": text}], **kwargs)

    def full_usage(self) -> dict[str, Any]:
        """Usage with every counter present (0 when not scripted)."""
        usage: dict[str, Any] = dict.fromkeys(USAGE_COUNTERS, 0)
        usage.update(self.usage)
        return usage


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into at most `parts` non-empty consecutive pieces (one empty piece for "")."""
    if not text:
        return [""]
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces: list[str] = []
    position = 0
    for index in range(parts):
        length = size + (1 if index < extra else 0)
        pieces.append(text[position : position + length])
        position += length
    return pieces


def tool_input_fragments(tool_input: dict[str, Any]) -> list[str]:
    """`input_json_delta` fragments: an empty one first, then the JSON text in a few pieces."""
    if not tool_input:
        return [""]
    return ["", *split_text(json.dumps(tool_input), TOOL_INPUT_FRAGMENTS)]


# --- Anthropic -----------------------------------------------------------------------------------


def anthropic_message(answer: ScriptedAnswer, *, model: str, message_id: str) -> dict[str, Any]:
    """The Anthropic Messages JSON body (also what Bedrock InvokeModel returns)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model or model,
        "content": [dict(block) for block in answer.content],
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": answer.full_usage(),
    }


def _start_usage(answer: ScriptedAnswer) -> dict[str, Any]:
    if answer.start_usage is not None:
        return dict(answer.start_usage)
    usage = answer.full_usage()
    usage["output_tokens"] = min(1, usage["output_tokens"])
    return usage


def _delta_usage(answer: ScriptedAnswer) -> dict[str, Any]:
    if answer.delta_usage is not None:
        return dict(answer.delta_usage)
    usage = answer.full_usage()
    return {counter: usage[counter] for counter in USAGE_COUNTERS}


def _block_start(block: dict[str, Any]) -> dict[str, Any]:
    block_type = block["type"]
    if block_type == "text":
        return {"type": "text", "text": ""}
    if block_type == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    if block_type == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "redacted_thinking", "data": block["data"]}


def _block_deltas(block: dict[str, Any], text_deltas: int) -> list[dict[str, Any]]:
    block_type = block["type"]
    if block_type == "text":
        return [
            {"type": "text_delta", "text": piece}
            for piece in split_text(block["text"], text_deltas)
        ]
    if block_type == "tool_use":
        return [
            {"type": "input_json_delta", "partial_json": fragment}
            for fragment in tool_input_fragments(block["input"])
        ]
    if block_type == "thinking":
        deltas = [
            {"type": "thinking_delta", "thinking": piece}
            for piece in split_text(block["thinking"], text_deltas)
        ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return deltas
    # A redacted block arrives whole in its content_block_start.
    return []


def anthropic_stream_events(
    answer: ScriptedAnswer,
    *,
    model: str,
    message_id: str,
    text_deltas: int,
    with_ping: bool = True,
) -> list[StreamEvent]:
    """The SSE event sequence as (event type, data) pairs, in Anthropic's order.

    message_start, then per block start / deltas / stop (a `ping` right after the first block
    start, where Anthropic sends it), then message_delta with cumulative usage and message_stop.
    """
    start_message = anthropic_message(answer, model=model, message_id=message_id)
    start_message.update(
        content=[], stop_reason=None, stop_sequence=None, usage=_start_usage(answer)
    )
    events: list[StreamEvent] = [
        ("message_start", {"type": "message_start", "message": start_message})
    ]
    ping: StreamEvent = ("ping", {"type": "ping"})
    for index, block in enumerate(answer.content):
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": _block_start(block),
                },
            )
        )
        if with_ping and index == 0:
            events.append(ping)
        for delta in _block_deltas(block, text_deltas):
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if with_ping and not answer.content:
        events.append(ping)
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
                "usage": _delta_usage(answer),
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


# --- Bedrock Converse ----------------------------------------------------------------------------


def converse_stop_reason(answer: ScriptedAnswer) -> str:
    if answer.converse_stop_reason is not None:
        return answer.converse_stop_reason
    return _CONVERSE_STOP_REASONS.get(answer.stop_reason, answer.stop_reason)


def converse_usage(answer: ScriptedAnswer) -> dict[str, Any]:
    """Converse usage: `inputTokens` excludes cache reads and writes, as on Bedrock.

    Cache counters appear only when caching happened, which is when Bedrock sends them.
    """
    usage = answer.full_usage()
    cache_read = usage["cache_read_input_tokens"]
    cache_write = usage["cache_creation_input_tokens"]
    converse: dict[str, Any] = {
        "inputTokens": usage["input_tokens"],
        "outputTokens": usage["output_tokens"],
        "totalTokens": usage["input_tokens"] + usage["output_tokens"] + cache_read + cache_write,
    }
    if cache_read or cache_write:
        converse["cacheReadInputTokens"] = cache_read
        converse["cacheWriteInputTokens"] = cache_write
    cache_creation = usage.get("cache_creation") or {}
    details = [
        {"ttl": ttl, "inputTokens": cache_creation[key]}
        for ttl, key in (("5m", "ephemeral_5m_input_tokens"), ("1h", "ephemeral_1h_input_tokens"))
        if cache_creation.get(key)
    ]
    if details:
        converse["cacheDetails"] = details
    return converse


def converse_block(block: dict[str, Any]) -> dict[str, Any]:
    block_type = block["type"]
    if block_type == "text":
        return {"text": block["text"]}
    if block_type == "tool_use":
        return {
            "toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}
        }
    if block_type == "thinking":
        return {
            "reasoningContent": {
                "reasoningText": {"text": block["thinking"], "signature": block["signature"]}
            }
        }
    return {"reasoningContent": {"redactedContent": block["data"]}}


def _additional_response_fields(
    answer: ScriptedAnswer, requested_paths: list[str] | None
) -> dict[str, Any] | None:
    # Converse returns the matched stop sequence only when asked for it by path.
    if requested_paths and "/stop_sequence" in requested_paths:
        return {"stop_sequence": answer.stop_sequence}
    return None


def converse_response(
    answer: ScriptedAnswer, *, latency_ms: int, requested_paths: list[str] | None = None
) -> dict[str, Any]:
    """The Converse JSON body."""
    response: dict[str, Any] = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [converse_block(block) for block in answer.content],
            }
        },
        "stopReason": converse_stop_reason(answer),
        "usage": converse_usage(answer),
        "metrics": {"latencyMs": latency_ms},
    }
    additional = _additional_response_fields(answer, requested_paths)
    if additional is not None:
        response["additionalModelResponseFields"] = additional
    return response


def _converse_deltas(block: dict[str, Any], text_deltas: int) -> list[dict[str, Any]]:
    block_type = block["type"]
    if block_type == "text":
        return [{"text": piece} for piece in split_text(block["text"], text_deltas)]
    if block_type == "tool_use":
        # Bedrock sends no input delta at all for a tool called without arguments.
        if not block["input"]:
            return []
        fragments = split_text(json.dumps(block["input"]), TOOL_INPUT_FRAGMENTS)
        return [{"toolUse": {"input": fragment}} for fragment in fragments]
    if block_type == "thinking":
        deltas: list[dict[str, Any]] = [
            {"reasoningContent": {"text": piece}}
            for piece in split_text(block["thinking"], text_deltas)
        ]
        deltas.append({"reasoningContent": {"signature": block["signature"]}})
        return deltas
    return [{"reasoningContent": {"redactedContent": block["data"]}}]


def converse_stream_events(
    answer: ScriptedAnswer,
    *,
    text_deltas: int,
    latency_ms: int,
    requested_paths: list[str] | None = None,
) -> list[StreamEvent]:
    """ConverseStream events as (event type, payload) pairs, without the `p` padding.

    Only toolUse blocks get a contentBlockStart; metadata (usage) comes after messageStop.
    """
    events: list[StreamEvent] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(answer.content):
        if block["type"] == "tool_use":
            start = {"toolUse": {"toolUseId": block["id"], "name": block["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for delta in _converse_deltas(block, text_deltas):
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    stop: dict[str, Any] = {"stopReason": converse_stop_reason(answer)}
    additional = _additional_response_fields(answer, requested_paths)
    if additional is not None:
        stop["additionalModelResponseFields"] = additional
    events.append(("messageStop", stop))
    events.append(
        ("metadata", {"usage": converse_usage(answer), "metrics": {"latencyMs": latency_ms}})
    )
    return events


# --- Bedrock InvokeModel -------------------------------------------------------------------------


def invocation_metrics(answer: ScriptedAnswer, *, latency_ms: int) -> dict[str, Any]:
    """`amazon-bedrock-invocationMetrics` carried by the last InvokeModel stream chunk."""
    usage = answer.full_usage()
    metrics: dict[str, Any] = {
        "inputTokenCount": usage["input_tokens"],
        "outputTokenCount": usage["output_tokens"],
        "invocationLatency": latency_ms,
        "firstByteLatency": latency_ms,
    }
    if usage["cache_read_input_tokens"] or usage["cache_creation_input_tokens"]:
        metrics["cacheReadInputTokenCount"] = usage["cache_read_input_tokens"]
        metrics["cacheWriteInputTokenCount"] = usage["cache_creation_input_tokens"]
    return metrics


def invoke_stream_events(
    answer: ScriptedAnswer, *, model: str, message_id: str, text_deltas: int, latency_ms: int
) -> list[StreamEvent]:
    """The Anthropic events Bedrock wraps in `chunk` frames; the last one carries the metrics."""
    events = anthropic_stream_events(
        answer, model=model, message_id=message_id, text_deltas=text_deltas, with_ping=False
    )
    last_type, last_data = events[-1]
    events[-1] = (
        last_type,
        {
            **last_data,
            "amazon-bedrock-invocationMetrics": invocation_metrics(answer, latency_ms=latency_ms),
        },
    )
    return events


# --- The answer when nothing is scripted ---------------------------------------------------------


def last_user_text(body: Any) -> str:
    """The text of the last user message of an Anthropic or Converse request body ("" if none)."""
    if not isinstance(body, dict):
        return ""
    if "input" in body and isinstance(body["input"], dict):  # Bedrock count-tokens wrapper
        body = body["input"].get("converse") or {}
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                block["text"]
                for block in content
                if isinstance(block, dict) and isinstance(block.get("text"), str)
            ]
            if texts:
                return " ".join(texts)
    return ""


def default_answer(*, prompt: str, words: int, input_tokens: int) -> ScriptedAnswer:
    """A short text answer derived from the prompt, padded to at least `words` words.

    Concurrent benchmark requests get answers without any scripting, and each answer shows which
    prompt it belongs to.
    """
    answer_words = ["Fake", "answer", "to:", *prompt.split()[:8]]
    answer_words.extend(f"w{number}" for number in range(len(answer_words), words))
    return ScriptedAnswer.text(
        " ".join(answer_words),
        usage={"input_tokens": max(1, input_tokens), "output_tokens": len(answer_words)},
    )


# --- GET /v1/models ------------------------------------------------------------------------------


def models_page(
    models: list[dict[str, Any]],
    *,
    limit: int = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> dict[str, Any]:
    """One page of Anthropic's model list, with its cursor fields."""
    ids = [model["id"] for model in models]
    if after_id is not None and after_id in ids:
        remaining = models[ids.index(after_id) + 1 :]
        page = remaining[:limit]
    elif before_id is not None and before_id in ids:
        remaining = models[: ids.index(before_id)]
        page = remaining[-limit:]
    else:
        remaining = models
        page = remaining[:limit]
    return {
        "data": page,
        "has_more": len(remaining) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
