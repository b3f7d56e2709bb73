"""Builders shared by the translation tests: hub (Anthropic Messages) conversation content and
hub stream events, written once so that each test spells out only what it is about.

No tests live here; the modules that use these import them by name.
"""

from __future__ import annotations

from typing import Any

from proxy.translation.hub import HubEvent

# --- conversation content -------------------------------------------------------------------------


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_use(tool_id: str, name: str = "get_weather", **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": args}


def tool_result(tool_id: str, content: Any = "18C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, **extra}


# --- stream events --------------------------------------------------------------------------------


def block_start(index: int, block: dict[str, Any]) -> HubEvent:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def delta(index: int, **body: Any) -> HubEvent:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": body}


def block_stop(index: int) -> HubEvent:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


MESSAGE_STOP: HubEvent = ("message_stop", {"type": "message_stop"})
