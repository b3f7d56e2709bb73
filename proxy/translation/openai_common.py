"""Helpers shared by the OpenAI translators (chat, stream, legacy completions), both directions.

The finish_reason ↔ stop_reason tables, usage in both vocabularies, the reasoning-effort budget
table, a tool_use block as an OpenAI tool call, and small value checks. Pure: no Django, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.translation.hub import JSON, TranslationError
from proxy.translation.sse import as_token_count

__all__ = [
    "HIGH_EFFORT_FROM",
    "LOW_EFFORT_BELOW",
    "REASONING_BUDGETS",
    "compact_json",
    "finish_reason_for",
    "is_blank",
    "openai_tool_call",
    "openai_usage",
    "positive_int",
    "reasoning_tokens_from_openai",
    "stop_reason_for",
    "usage_from_openai",
]

# reasoning_effort → Anthropic thinking budget. Anthropic's minimum budget is 1024; the steps
# roughly follow how much more OpenAI's reasoning models think per level. "none" turns thinking
# off. The reverse direction (hub → OpenAI upstream) maps a budget below LOW_EFFORT_BELOW to
# "low", below HIGH_EFFORT_FROM to "medium", else "high", so each level here comes back as itself
# ("minimal" comes back as "low": not every OpenAI-compatible server knows "minimal").
REASONING_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,
}
LOW_EFFORT_BELOW = 4096
HIGH_EFFORT_FROM = 16384

_STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def compact_json(value: Any) -> str:
    """JSON without spaces, non-ASCII kept (the form OpenAI sends tool arguments in)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def openai_tool_call(tool_use: Mapping[str, Any]) -> JSON:
    """An OpenAI ``tool_calls`` entry for an Anthropic ``tool_use`` block (arguments as JSON)."""
    return {
        "id": str(tool_use.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(tool_use.get("name") or ""),
            "arguments": compact_json(tool_use.get("input") or {}),
        },
    }


def positive_int(value: Any, param: str) -> int:
    """``value`` if it is an int ≥ 1; else ``TranslationError`` naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranslationError(f"{param} must be a positive integer.", param=param)
    return value


def is_blank(text: str) -> bool:
    """Empty or whitespace only: text Anthropic and Bedrock reject in a text block."""
    return not text.strip()


def stop_reason_for(finish_reason: Any) -> str:
    """Anthropic ``stop_reason`` for an OpenAI ``finish_reason`` (unknown or null: end_turn)."""
    if isinstance(finish_reason, str):
        return _STOP_REASONS.get(finish_reason, "end_turn")
    return "end_turn"


def finish_reason_for(stop_reason: Any) -> str:
    """OpenAI ``finish_reason`` for an Anthropic ``stop_reason`` (unknown or null: stop)."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from_openai(usage: Any) -> JSON:
    """Anthropic usage for an OpenAI usage object: ``input_tokens`` excludes the cached prompt."""
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt = as_token_count(usage.get("prompt_tokens"))
    cached = min(as_token_count(details.get("cached_tokens")), prompt)
    written = min(as_token_count(details.get("cache_write_tokens")), prompt - cached)
    return {
        "input_tokens": prompt - cached - written,
        "output_tokens": as_token_count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def reasoning_tokens_from_openai(usage: Any) -> int:
    """The reasoning part of an OpenAI usage object's ``completion_tokens`` (0 when not
    reported): ``completion_tokens_details.reasoning_tokens``."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    return as_token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0


def openai_usage(
    *, input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int
) -> JSON:
    """OpenAI usage for Anthropic counts: the prompt includes both cache buckets."""
    prompt = input_tokens + cache_read + cache_creation
    details: JSON = {"cached_tokens": cache_read}
    if cache_creation:
        details["cache_write_tokens"] = cache_creation
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output_tokens,
        "total_tokens": prompt + output_tokens,
        "prompt_tokens_details": details,
    }
