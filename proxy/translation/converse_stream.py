"""Bedrock ConverseStream events -> Anthropic Messages SSE events.

``ConverseStreamTranslator`` takes decoded ConverseStream events one at a time (the eventstream
framing is decoded elsewhere) and returns the Anthropic events to send, as ``(event name, data)``
pairs. It owns the parts other gateways got wrong:

- blocks are keyed by Bedrock's ``contentBlockIndex``, and Anthropic indexes are handed out in
  emission order, so they stay 0..n-1 even when Bedrock skips indexes;
- text and reasoning blocks get a synthesized ``content_block_start`` (Bedrock sends none), and a
  text block is only opened once it has non-blank text, so no blank text block is ever emitted;
- a tool call without input deltas still ends with input ``{}``;
- redacted reasoning is buffered and emitted as one ``redacted_thinking`` start/stop pair;
- ``message_delta`` is held until the ``metadata`` event (which follows ``messageStop``) so it
  carries the real input, output and cache token counts, then ``message_stop`` follows.

Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.translation.converse_common import (
    DEFAULT_STOP_REASON,
    JSON,
    join_redacted_chunks,
    map_stop_reason,
    stop_sequence_from,
    usage_from_converse,
)
from proxy.translation.hub import message_end_events, message_start_event, zero_usage

__all__ = ["ConverseStreamTranslator", "SSEEvent"]

SSEEvent = tuple[str, JSON]

_TEXT = "text"
_THINKING = "thinking"
_TOOL_USE = "tool_use"
_REDACTED = "redacted_thinking"


@dataclass
class _Block:
    kind: str
    # Anthropic index, assigned when content_block_start is emitted; None while held back.
    index: int | None = None
    closed: bool = False
    # Text that is still blank and therefore not emitted yet.
    held_text: str = ""
    received_input: bool = False
    redacted_chunks: list[Any] = field(default_factory=list)


class ConverseStreamTranslator:
    """Translate one ConverseStream response into Anthropic SSE events.

    Call ``feed`` for every decoded event, then ``finish`` once the upstream stream has ended
    (it emits the held ``message_delta``/``message_stop`` when ``metadata`` never came, and
    nothing when they were already sent). ``model`` is the name the client asked for;
    ``tool_names`` maps sanitised tool names back to the client's (see
    ``converse.tool_name_map``).
    """

    def __init__(
        self, *, model: str, message_id: str, tool_names: Mapping[str, str] | None = None
    ) -> None:
        self._model = model
        self._message_id = message_id
        self._tool_names: Mapping[str, str] = tool_names or {}
        self._blocks: dict[int, _Block] = {}
        self._next_index = 0
        self._started = False
        self._stopped = False
        self._have_metadata = False
        self._done = False
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: JSON = zero_usage()

    @property
    def usage(self) -> JSON:
        """Anthropic usage so far (zeros until Bedrock's ``metadata`` event arrives)."""
        return dict(self._usage)

    @property
    def stop_reason(self) -> str | None:
        """Anthropic stop reason, once ``messageStop`` (or ``finish``) has set it."""
        return self._stop_reason

    def feed(self, event_type: str, payload: dict[str, Any]) -> list[SSEEvent]:
        if self._done:
            return []
        out: list[SSEEvent] = []
        if event_type == "metadata":
            # Usage only: does not start a message by itself.
            self._usage = usage_from_converse(payload.get("usage"))
            self._have_metadata = True
            if self._stopped:
                out += self._end_message()
            return out
        if event_type not in (
            "messageStart",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
        ):
            return out  # newer event types carry nothing a client needs
        self._start_message(out)
        block_index = payload.get("contentBlockIndex")
        if event_type == "contentBlockStart" and isinstance(block_index, int):
            self._on_block_start(block_index, payload.get("start"), out)
        elif event_type == "contentBlockDelta" and isinstance(block_index, int):
            self._on_block_delta(block_index, payload.get("delta"), out)
        elif event_type == "contentBlockStop" and isinstance(block_index, int):
            self._close_block(block_index, out)
        elif event_type == "messageStop":
            self._close_all(out)
            self._stop_reason = map_stop_reason(payload.get("stopReason"))
            self._stop_sequence = stop_sequence_from(payload.get("additionalModelResponseFields"))
            self._stopped = True
            if self._have_metadata:
                out += self._end_message()
        return out

    def finish(self) -> list[SSEEvent]:
        if self._done:
            return []
        out: list[SSEEvent] = []
        self._start_message(out)
        self._close_all(out)
        if self._stop_reason is None:
            self._stop_reason = DEFAULT_STOP_REASON
        out += self._end_message()
        return out

    # --- message ----------------------------------------------------------------------------------

    def _start_message(self, out: list[SSEEvent]) -> None:
        if self._started:
            return
        self._started = True
        # Bedrock reports usage only at the very end; the real values go in message_delta.
        out.append(
            message_start_event(message_id=self._message_id, model=self._model, usage=zero_usage())
        )

    def _end_message(self) -> list[SSEEvent]:
        self._done = True
        usage = {
            key: self._usage[key]
            for key in (
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            )
        }
        return message_end_events(
            stop_reason=self._stop_reason or DEFAULT_STOP_REASON,
            stop_sequence=self._stop_sequence,
            usage=usage,
        )

    # --- blocks -----------------------------------------------------------------------------------

    def _on_block_start(self, block_index: int, start: Any, out: list[SSEEvent]) -> None:
        tool_use = start.get("toolUse") if isinstance(start, dict) else None
        if block_index in self._blocks or not isinstance(tool_use, dict):
            return
        block = self._blocks[block_index] = _Block(kind=_TOOL_USE)
        name = str(tool_use.get("name") or "")
        self._open(
            block,
            {
                "type": "tool_use",
                "id": str(tool_use.get("toolUseId") or ""),
                "name": self._tool_names.get(name, name),
                "input": {},
            },
            out,
        )

    def _on_block_delta(self, block_index: int, delta: Any, out: list[SSEEvent]) -> None:
        if not isinstance(delta, dict):
            return
        if isinstance(delta.get("text"), str):
            self._on_text(block_index, delta["text"], out)
        elif isinstance(delta.get("toolUse"), dict):
            self._on_tool_input(block_index, delta["toolUse"].get("input"), out)
        elif isinstance(delta.get("reasoningContent"), dict):
            self._on_reasoning(block_index, delta["reasoningContent"], out)
        # citation deltas are not requested (see converse._document) and are ignored.

    def _on_text(self, block_index: int, text: str, out: list[SSEEvent]) -> None:
        block = self._block(block_index, _TEXT)
        if block is None:
            return
        if block.index is None:
            block.held_text += text
            if not block.held_text.strip():
                return  # still blank: a blank text block must never reach the client
            text, block.held_text = block.held_text, ""
            self._open(block, {"type": "text", "text": ""}, out)
        if text:
            self._delta(block, {"type": "text_delta", "text": text}, out)

    def _on_tool_input(self, block_index: int, fragment: Any, out: list[SSEEvent]) -> None:
        block = self._blocks.get(block_index)
        if block is None or block.kind != _TOOL_USE or block.closed:
            return
        if isinstance(fragment, str) and fragment:
            block.received_input = True
            self._delta(block, {"type": "input_json_delta", "partial_json": fragment}, out)

    def _on_reasoning(self, block_index: int, reasoning: JSON, out: list[SSEEvent]) -> None:
        if "redactedContent" in reasoning:
            block = self._block(block_index, _REDACTED)
            if block is not None:
                block.redacted_chunks.append(reasoning["redactedContent"])
            return
        block = self._block(block_index, _THINKING)
        if block is None:
            return
        text, signature = reasoning.get("text"), reasoning.get("signature")
        delta: JSON
        if isinstance(text, str) and text:
            delta = {"type": "thinking_delta", "thinking": text}
        elif isinstance(signature, str) and signature:
            delta = {"type": "signature_delta", "signature": signature}
        else:
            return
        if block.index is None:
            self._open(block, {"type": "thinking", "thinking": "", "signature": ""}, out)
        self._delta(block, delta, out)

    def _block(self, block_index: int, kind: str) -> _Block | None:
        """The open block of ``kind`` at ``block_index``, created on its first delta."""
        block = self._blocks.setdefault(block_index, _Block(kind=kind))
        if block.kind != kind or block.closed:
            return None
        return block

    def _open(self, block: _Block, content_block: JSON, out: list[SSEEvent]) -> None:
        block.index = self._next_index
        self._next_index += 1
        out.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": block.index,
                    "content_block": content_block,
                },
            )
        )

    def _delta(self, block: _Block, delta: JSON, out: list[SSEEvent]) -> None:
        out.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": block.index, "delta": delta},
            )
        )

    def _close_block(self, block_index: int, out: list[SSEEvent]) -> None:
        block = self._blocks.get(block_index)
        if block is None or block.closed:
            return
        block.closed = True
        if block.kind == _TOOL_USE and not block.received_input:
            # Clients that parse the concatenated partial_json need a complete object.
            self._delta(block, {"type": "input_json_delta", "partial_json": "{}"}, out)
        elif block.kind == _REDACTED and block.redacted_chunks:
            data = join_redacted_chunks(block.redacted_chunks)
            self._open(block, {"type": "redacted_thinking", "data": data}, out)
        if block.index is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": block.index}))

    def _close_all(self, out: list[SSEEvent]) -> None:
        for block_index in sorted(self._blocks):
            self._close_block(block_index, out)
