"""The hub format every translator speaks: Anthropic Messages requests, answers and stream events.

Each upstream or client wire format (OpenAI chat, Gemini, Ollama, Converse, Invoke) has one pure
translator to and from this hub, so N formats need 2·N translators instead of one per pair.

- A request or an answer is an Anthropic Messages dict (``model``, ``messages``, ``system``,
  ``tools``...; ``{"type": "message", "content": [...], "usage": {...}}``).
- A stream is a sequence of ``HubEvent``: ``(event name, data)`` exactly as Anthropic sends them
  (``message_start`` … ``message_stop``, ``error``), ready for ``encode_sse``.
- ``TranslationError`` is what a translator raises for a request it cannot express upstream
  (the proxy answers 400 in the client's format, naming ``param``).
- ``HubUsage`` reads token usage from hub events as they pass.

Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.translation.sse import USAGE_FIELDS, Usage, as_token_count

JSON = dict[str, Any]
HubEvent = tuple[str, JSON]


class TranslationError(ValueError):
    """A client request that cannot be translated; ``param`` names the offending field
    (dotted path such as ``messages.2.tool_calls.0.function.arguments``), or is None."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class HubUsage:
    """Token usage of a hub stream, fed event by event.

    ``message_start`` carries the input side; ``message_delta`` carries cumulative counts that
    win when they are present (Anthropic puts the real input and cache counts there when
    ``message_start`` could only say 0).
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        self.reasoning_tokens = 0
        self.model: str = ""
        self.stop_reason: str | None = None
        self.error: tuple[str, str] | None = None

    @property
    def usage(self) -> Usage:
        return Usage(**self._counts)

    def _take(self, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            return
        for name in USAGE_FIELDS:
            if raw.get(name) is not None:
                self._counts[name] = as_token_count(raw.get(name))

    def feed(self, event: str, data: Mapping[str, Any]) -> None:
        if event == "message_start":
            message = data.get("message")
            if isinstance(message, Mapping):
                self._take(message.get("usage"))
                self.model = str(message.get("model") or self.model)
        elif event == "message_delta":
            self._take(data.get("usage"))
            delta = data.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason"):
                self.stop_reason = str(delta["stop_reason"])
        elif event == "error":
            error = data.get("error")
            if isinstance(error, Mapping):
                self.error = (str(error.get("type") or ""), str(error.get("message") or ""))


def zero_usage() -> JSON:
    """The complete usage object of a ``message_start`` whose counts are not known yet (every
    field present: Claude Code breaks on missing ones)."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def hub_message(
    *,
    message_id: str,
    model: str,
    content: list[JSON],
    stop_reason: str | None,
    stop_sequence: str | None,
    usage: JSON,
) -> JSON:
    """An Anthropic Message from the assistant, keys in the order Anthropic sends them."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def message_start_event(*, message_id: str, model: str, usage: JSON) -> HubEvent:
    """The ``message_start`` that opens every stream: no content and no stop reason yet;
    ``usage`` must hold every field (``zero_usage`` when nothing is known yet)."""
    message = hub_message(
        message_id=message_id,
        model=model,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=usage,
    )
    return ("message_start", {"type": "message_start", "message": message})


def message_end_events(
    *, stop_reason: str, stop_sequence: str | None, usage: JSON
) -> list[HubEvent]:
    """``message_delta`` (stop reason, cumulative usage) then ``message_stop``: how every stream
    that did not fail ends."""
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": usage,
    }
    return [("message_delta", delta), ("message_stop", {"type": "message_stop"})]


# Thinking blocks other providers' answers left in a conversation: Gemini's thought signatures
# (kept as "gemini:<signature>") and unsigned reasoning (OpenAI-compatible servers, Ollama).
# Anthropic checks every thinking block's signature and rejects these with a 400.
FOREIGN_SIGNATURE_PREFIXES = ("gemini:",)
_FOREIGN_MARKERS = (
    b'"signature":"gemini:',
    b'"signature": "gemini:',
    b'"signature":""',
    b'"signature": ""',
)


def may_hold_foreign_thinking(body: bytes) -> bool:
    """A cheap look at the raw bytes: can the request hold thinking Anthropic would refuse?
    (A thinking block without any signature key is caught by the parsed check only.)"""
    return b'"thinking"' in body and (
        any(marker in body for marker in _FOREIGN_MARKERS) or b'"signature"' not in body
    )


def _is_foreign_thinking(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not signature or (
        isinstance(signature, str) and signature.startswith(FOREIGN_SIGNATURE_PREFIXES)
    )


def without_foreign_thinking(request: JSON) -> JSON:
    """``request`` as Anthropic accepts it after other providers had their turns (unchanged when
    nothing needs to change).

    Thinking blocks Anthropic would refuse are dropped: a conversation that moves from Gemini,
    Ollama or an OpenAI server to Claude keeps its text and tool calls, and loses only reasoning
    Claude could not verify anyway. And ``thinking`` itself is left out while the request answers
    the tool calls of an assistant turn that does not start with a thinking block: Anthropic
    refuses thinking then ("a final assistant message must start with a thinking block"), and
    such a block was just dropped, or the client has no way to send it back (an OpenAI client
    returns tool calls without their reasoning). The next turn that answers no tool call thinks
    again.
    """
    cleaned = _without_foreign_blocks(request)
    thinking = cleaned.get("thinking")
    if (
        isinstance(thinking, dict)
        and _named(thinking.get("type"), _THINKING_ON)
        and _answers_unthought_tool_calls(cleaned.get("messages"))
    ):
        cleaned = {key: value for key, value in cleaned.items() if key != "thinking"}
    return cleaned


def _without_foreign_blocks(request: JSON) -> JSON:
    messages = request.get("messages")
    if not isinstance(messages, list) or not any(
        isinstance(message, dict)
        and isinstance(message.get("content"), list)
        and any(_is_foreign_thinking(block) for block in message["content"])
        for message in messages
    ):
        return request
    cleaned = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            content = [block for block in message["content"] if not _is_foreign_thinking(block)]
            message = {**message, "content": content or [{"type": "text", "text": "(thinking)"}]}
        cleaned.append(message)
    return {**request, "messages": cleaned}


_THINKING_ON = frozenset({"enabled", "adaptive"})
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def _named(value: Any, names: frozenset[str]) -> bool:
    """``value`` is one of ``names`` (a client's value may be anything JSON holds: a dict is no
    name, and no set can even look it up)."""
    return isinstance(value, str) and value in names


def _has_block(content: Any, block_type: str) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == block_type for block in content
    )


def _answers_unthought_tool_calls(messages: Any) -> bool:
    """Whether the last message holds tool results for an assistant turn whose first block is
    not thinking."""
    if not isinstance(messages, list) or len(messages) < 2:
        return False
    answer, turn = messages[-1], messages[-2]
    if not (isinstance(answer, dict) and answer.get("role") == "user"):
        return False
    if not (isinstance(turn, dict) and turn.get("role") == "assistant"):
        return False
    if not _has_block(answer.get("content"), "tool_result"):
        return False
    content = turn.get("content")
    if not isinstance(content, list) or not _has_block(content, "tool_use"):
        return False
    first = content[0]
    return not (isinstance(first, dict) and _named(first.get("type"), _THINKING_BLOCKS))


def tool_names_by_id(messages: list[Any]) -> dict[str, str]:
    """tool_use id → tool name over a conversation (formats whose tool results carry the
    name, not the id, need it)."""
    names: dict[str, str] = {}
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            for block in content:
                if isinstance(block, Mapping) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name") or "")
    return names


def system_texts(system: Any, path: str) -> list[str]:
    """The non-blank texts of a ``system`` prompt (a string or a list of text blocks) or of a
    ``role: "system"`` message's content, for formats that take system text apart from the
    turns; anything else is a ``TranslationError`` naming ``path``."""
    if isinstance(system, str):
        return [system] if system.strip() else []
    if system is None:
        return []
    if not isinstance(system, list):
        raise TranslationError("system must be a string or a list of text blocks", param=path)
    texts = []
    for block in system:
        text = block.get("text") if isinstance(block, Mapping) else None
        if isinstance(text, str) and text.strip():
            texts.append(text)
    return texts


def client_tools(tools: Any) -> list[tuple[int, Mapping[str, Any], str]]:
    """``(index, tool, name)`` of a request's client tools, checked; server tools (web search,
    code execution...) run only on Anthropic and are left out."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list", param="tools")
    found: list[tuple[int, Mapping[str, Any], str]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise TranslationError("each tool must be an object", param=f"tools.{index}")
        if tool.get("type") not in (None, "custom"):
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("each tool needs a name", param=f"tools.{index}.name")
        found.append((index, tool, name))
    return found
