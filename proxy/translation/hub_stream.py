"""A well-formed hub stream built from an upstream that answers in whole parts, and read back.

Gemini and Ollama answer in parts (a text fragment, a thought fragment, a whole function call)
rather than in Anthropic's block events. ``HubStreamBuilder`` turns such parts into hub events and
owns the rules every Anthropic stream must keep (PROTOCOLS.md §7), so each provider's stream class
only decides what a part means:

- ``message_start`` comes first and carries a complete usage object;
- blocks are opened and closed strictly in order, indexes 0..n-1, one open block at a time;
- no blank text block is ever emitted (blank text is held until something non-blank follows, and
  dropped when a tool call, thinking or the end comes first);
- a tool call is one ``content_block_start`` + one ``input_json_delta`` + ``content_block_stop``;
- the stream always ends with one ``message_delta`` (stop reason, cumulative usage) and
  ``message_stop`` — or with an ``error`` event, which replaces the rest as Anthropic does.

``assemble_message`` folds such events back into an Anthropic Message, so a provider's
non-streaming translation is its stream translation run over one whole answer: both paths agree
by construction. ``new_tool_use_id`` makes the ids Gemini and Ollama do not give.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from proxy.translation.hub import (
    JSON,
    HubEvent,
    message_end_events,
    message_start_event,
    zero_usage,
)
from proxy.translation.sse import Usage

__all__ = [
    "HubStreamBuilder",
    "ToolIdFactory",
    "assemble_message",
    "new_tool_use_id",
]

ToolIdFactory = Callable[[], str]

_TEXT = "text"
_THINKING = "thinking"


def new_tool_use_id() -> str:
    """A fresh tool_use id in Anthropic's shape (``toolu_`` + 24 hex digits)."""
    return "toolu_" + secrets.token_hex(12)


class HubStreamBuilder:
    """Collects hub events for one answer; call the part methods, then ``drain`` what to send."""

    def __init__(self, *, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._events: list[HubEvent] = []
        self._started = False
        self._done = False
        self._next_index = 0
        self._open_kind: str | None = None
        self._open_signed = False
        self._held_text = ""
        self.usage = Usage()
        self.tool_calls = 0
        self.blocks = 0

    @property
    def done(self) -> bool:
        """True once ``message_stop`` or an ``error`` event has been emitted."""
        return self._done

    def drain(self) -> list[HubEvent]:
        """The events produced since the last call."""
        events, self._events = self._events, []
        return events

    # --- parts ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Emit ``message_start`` (once), with the usage known so far."""
        if self._started or self._done:
            return
        self._started = True
        usage = zero_usage()
        usage.update(self.usage.as_dict())
        self._events.append(
            message_start_event(message_id=self._message_id, model=self._model, usage=usage)
        )

    def text(self, value: str) -> None:
        if not value or self._done:
            return
        self.start()
        if self._open_kind != _TEXT:
            self._held_text += value
            if not self._held_text.strip():
                return  # still blank: a blank text block must never reach the client
            value, self._held_text = self._held_text, ""
            self._open(_TEXT, {"type": "text", "text": ""})
        self._delta({"type": "text_delta", "text": value})

    def thinking(self, value: str) -> None:
        if not value or self._done:
            return
        self.start()
        self._held_text = ""
        if self._open_kind != _THINKING or self._open_signed:
            self._open(_THINKING, {"type": "thinking", "thinking": "", "signature": ""})
        self._delta({"type": "thinking_delta", "thinking": value})

    def signature(self, value: str) -> None:
        """Sign the open, unsigned thinking block, or emit a thinking block holding only it."""
        if not value or self._done:
            return
        self.start()
        self._held_text = ""
        if self._open_kind != _THINKING or self._open_signed:
            self._open(_THINKING, {"type": "thinking", "thinking": "", "signature": ""})
        self._delta({"type": "signature_delta", "signature": value})
        self.close_block()

    def tool_use(self, *, tool_id: str, name: str, arguments: Mapping[str, Any]) -> None:
        if self._done:
            return
        self.start()
        self._held_text = ""
        self._open("tool_use", {"type": "tool_use", "id": tool_id, "name": name, "input": {}})
        partial = json.dumps(dict(arguments), ensure_ascii=False, separators=(",", ":"))
        self._delta({"type": "input_json_delta", "partial_json": partial})
        self.close_block()
        self.tool_calls += 1

    def close_block(self) -> None:
        if self._open_kind is None:
            return
        self._emit(
            "content_block_stop", {"type": "content_block_stop", "index": self._next_index - 1}
        )
        self._open_kind = None
        self._open_signed = False

    # --- ends -------------------------------------------------------------------------------------

    def finish(self, stop_reason: str, stop_sequence: str | None = None) -> None:
        """Close what is open and emit ``message_delta`` + ``message_stop``; once."""
        if self._done:
            return
        self.start()
        self.close_block()
        self._held_text = ""
        usage = zero_usage()
        usage.update(self.usage.as_dict())
        self._events += message_end_events(
            stop_reason=stop_reason, stop_sequence=stop_sequence, usage=usage
        )
        self._done = True

    def error(self, body: JSON) -> None:
        """Emit an Anthropic ``error`` event; nothing follows it."""
        if self._done:
            return
        self._emit("error", body)
        self._done = True

    # --- internals --------------------------------------------------------------------------------

    def _open(self, kind: str, content_block: JSON) -> None:
        self.close_block()
        index = self._next_index
        self._next_index += 1
        self.blocks += 1
        self._open_kind = kind
        self._open_signed = False
        start = {"type": "content_block_start", "index": index, "content_block": content_block}
        self._emit("content_block_start", start)

    def _delta(self, delta: JSON) -> None:
        if delta.get("type") == "signature_delta":
            self._open_signed = True
        data = {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        self._emit("content_block_delta", data)

    def _emit(self, event: str, data: JSON) -> None:
        self._events.append((event, data))


def assemble_message(events: Iterable[HubEvent]) -> JSON:
    """The Anthropic Message a well-formed hub stream describes (error events are ignored)."""
    message: JSON = {}
    blocks: list[JSON] = []
    partial_json: dict[int, str] = {}
    for event, data in events:
        if event == "message_start":
            message = dict(data["message"])
            message["usage"] = dict(message.get("usage") or zero_usage())
        elif event == "content_block_start":
            blocks.append(dict(data["content_block"]))
        elif event == "content_block_delta":
            _apply_delta(blocks[data["index"]], data["delta"], partial_json, data["index"])
        elif event == "message_delta":
            message["stop_reason"] = data["delta"].get("stop_reason")
            message["stop_sequence"] = data["delta"].get("stop_sequence")
            message["usage"].update(data.get("usage") or {})
    for index, text in partial_json.items():
        blocks[index]["input"] = json.loads(text) if text else {}
    message["content"] = blocks
    return message


def _apply_delta(block: JSON, delta: JSON, partial_json: dict[int, str], index: int) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] += delta["signature"]
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + delta["partial_json"]
