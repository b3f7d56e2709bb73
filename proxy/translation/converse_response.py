"""Bedrock Converse response -> Anthropic Message (non-streaming).

Imported through ``proxy.translation.converse``; streaming responses are in ``converse_stream``.
Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.translation.converse_common import (
    JSON,
    as_dict,
    dicts,
    map_stop_reason,
    redacted_data,
    stop_sequence_from,
    usage_from_converse,
)
from proxy.translation.hub import hub_message

__all__ = ["converse_to_anthropic"]


def converse_to_anthropic(
    response: dict[str, Any],
    *,
    model: str,
    message_id: str,
    tool_names: Mapping[str, str] | None = None,
) -> JSON:
    """The Anthropic Message for a Converse response; ``model`` is the name the client asked for."""
    message = as_dict(as_dict(response.get("output")).get("message"))
    content: list[JSON] = []
    for block in dicts(message.get("content")):
        converted = _response_block(block, tool_names or {})
        if converted is not None:
            content.append(converted)
    return hub_message(
        message_id=message_id,
        model=model,
        content=content,
        stop_reason=map_stop_reason(response.get("stopReason")),
        stop_sequence=stop_sequence_from(response.get("additionalModelResponseFields")),
        usage=usage_from_converse(response.get("usage")),
    )


def _response_block(block: JSON, tool_names: Mapping[str, str]) -> JSON | None:
    if "text" in block:
        text = block["text"]
        # Blank text blocks would be replayed later and rejected by both Anthropic and Bedrock.
        return {"type": "text", "text": text} if isinstance(text, str) and text.strip() else None
    if "toolUse" in block:
        tool_use = as_dict(block["toolUse"])
        name = str(tool_use.get("name") or "")
        tool_input = tool_use.get("input")
        return {
            "type": "tool_use",
            "id": str(tool_use.get("toolUseId") or ""),
            "name": tool_names.get(name, name),
            "input": tool_input if isinstance(tool_input, dict) else {},
        }
    if "reasoningContent" in block:
        reasoning = as_dict(block["reasoningContent"])
        if "redactedContent" in reasoning:
            return {
                "type": "redacted_thinking",
                "data": redacted_data(reasoning["redactedContent"]),
            }
        text_block = as_dict(reasoning.get("reasoningText"))
        return {
            "type": "thinking",
            "thinking": str(text_block.get("text") or ""),
            "signature": str(text_block.get("signature") or ""),
        }
    if "citationsContent" in block:
        parts = dicts(as_dict(block["citationsContent"]).get("content"))
        text = "".join(str(p.get("text") or "") for p in parts)
        return {"type": "text", "text": text} if text.strip() else None
    return None
