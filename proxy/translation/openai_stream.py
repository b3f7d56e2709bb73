"""Streams between the hub and OpenAI's ``chat.completion.chunk`` format, both directions.

``AnthropicToChatChunks`` (hub events → chunks for an OpenAI client) and
``ChatChunksToAnthropic`` (an OpenAI-compatible upstream's chunks → hub events). They own the
rules other gateways got wrong (PROTOCOLS.md §7):

- a tool call's ``index`` counts tool calls, not content blocks; thinking goes to
  ``delta.reasoning_content``, never into ``content``;
- the usage chunk comes only with ``include_usage``, after the finish chunk, before ``[DONE]``;
- an error inside a stream becomes the client format's in-stream error, and nothing follows it;
- towards the hub: ``message_start`` carries a complete usage object, blocks open and close
  strictly in order with indexes 0..n-1, no text block is blank, no argument fragment is lost,
  and ``finish()`` always ends the message with ``message_delta`` and ``message_stop``, even
  when the upstream stopped without ``finish_reason``, usage or ``[DONE]``.

Pure: no Django, no I/O. The caller frames the output (``data: <json>`` lines / ``encode_sse``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.translation.hub import (
    JSON,
    HubEvent,
    HubUsage,
    message_end_events,
    message_start_event,
    zero_usage,
)
from proxy.translation.openai_common import (
    finish_reason_for,
    is_blank,
    openai_usage,
    reasoning_tokens_from_openai,
    stop_reason_for,
    usage_from_openai,
)
from proxy.translation.openai_errors import anthropic_error_to_openai, openai_error_to_anthropic
from proxy.translation.sse import Usage, normalize_usage

__all__ = ["AnthropicToChatChunks", "ChatChunksToAnthropic"]


# --- hub events → chat.completion.chunk --------------------------------------------------------


class AnthropicToChatChunks:
    """Hub (Anthropic) stream events → ``chat.completion.chunk`` dicts for an OpenAI client.

    ``feed`` takes one event and returns the chunks to send (often none); ``finish`` returns
    what is still owed once the upstream ended: the finish chunk (``stop``) if no
    ``message_delta`` came, and the usage chunk with ``include_usage``. After an ``error``
    event, which becomes OpenAI's ``{"error": {...}}``, nothing more is returned.
    """

    def __init__(
        self, *, model: str, completion_id: str, created: int, include_usage: bool
    ) -> None:
        self._base: JSON = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._id, self._created, self._model = completion_id, created, model
        self._include_usage = include_usage
        self.usage = HubUsage()
        self._started = False
        self._finished = False
        self._done = False
        # Anthropic block index → OpenAI tool call index (tool_use blocks only).
        self._tool_index: dict[int, int] = {}

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        # A dict literal per chunk: this runs for every streamed token.
        chunk: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI does: null on every chunk but the last
        return chunk

    def _start(self, out: list[JSON]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def feed(self, event: str, data: JSON) -> list[JSON]:
        if self._done:
            return []
        out: list[JSON] = []
        if event == "content_block_delta":
            # The bulk of every stream: handled first, text inline, without the usage reader
            # (deltas carry no usage).
            delta = data.get("delta")
            if self._started and type(delta) is dict and delta.get("type") == "text_delta":
                text = delta.get("text")
                if not text or type(text) is not str:
                    return out
                chunk = {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": text},
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ],
                }
                if self._include_usage:
                    chunk["usage"] = None
                return [chunk]
            self._start(out)
            self._on_delta(data, out)
            return out
        self.usage.feed(event, data)
        if event == "message_start":
            self._start(out)
        elif event == "content_block_start":
            self._start(out)
            block = data.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                index = len(self._tool_index)
                self._tool_index[_as_index(data.get("index"))] = index
                call = {
                    "index": index,
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
        elif event == "message_delta":
            self._start(out)
            if not self._finished:
                out += self._finish_chunks(self.usage.stop_reason)
        elif event == "error":
            self._done = True
            out.append(anthropic_error_to_openai(500, data if isinstance(data, dict) else {}))
        # ping, message_stop, content_block_stop and unknown events: nothing to send.
        return out

    def _on_delta(self, data: JSON, out: list[JSON]) -> None:
        delta = data.get("delta")
        if type(delta) is not dict:
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text and type(text) is str:
                out.append(self._chunk({"content": text}))
        elif kind == "thinking_delta":
            thinking = delta.get("thinking")
            if thinking and type(thinking) is str:
                out.append(self._chunk({"reasoning_content": thinking}))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            index = self._tool_index.get(_as_index(data.get("index")))
            if fragment and type(fragment) is str and index is not None:
                call = {"index": index, "function": {"arguments": fragment}}
                out.append(self._chunk({"tool_calls": [call]}))
        # signature_delta and citations_delta have no OpenAI equivalent.

    def _finish_chunks(self, stop_reason: str | None) -> list[JSON]:
        self._finished = True
        finish_reason = finish_reason_for(stop_reason)
        if self._tool_index and finish_reason == "stop":
            finish_reason = "tool_calls"
        out = [self._chunk({}, finish_reason)]
        if self._include_usage:
            self._done = True
            usage = self.usage.usage
            out.append(
                {
                    **self._base,
                    "choices": [],
                    "usage": openai_usage(
                        input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens,
                        cache_read=usage.cache_read_input_tokens,
                        cache_creation=usage.cache_creation_input_tokens,
                    ),
                }
            )
        return out

    def finish(self) -> list[JSON]:
        """What is still owed after the upstream ended; nothing after an error or a second call."""
        if self._done:
            return []
        out: list[JSON] = []
        self._start(out)
        if not self._finished:
            out += self._finish_chunks(self.usage.stop_reason or "end_turn")
        self._done = True
        return out


def _as_index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


# --- chat.completion.chunk → hub events --------------------------------------------------------

_TEXT = "text"
_THINKING = "thinking"
_TOOL = "tool_use"


@dataclass
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""
    # True once this call's content_block_start was sent (its fragments then stream live).
    opened: bool = False
    received_arguments: bool = False


class ChatChunksToAnthropic:
    """An OpenAI-compatible upstream's ``chat.completion.chunk`` dicts → hub events.

    Text and reasoning stream live, one block at a time. The first tool call streams live as
    soon as its name is known; fragments of any other call are kept and that call is sent
    whole (start, its arguments, stop) when the stream reaches ``finish_reason`` or ends. This
    keeps blocks strictly ordered even for upstreams that interleave fragments of parallel calls,
    and never loses a fragment. Text or reasoning that arrives after tool calls started is kept
    the same way and sent after them.

    ``finish`` always closes what is open and sends ``message_delta`` (stop reason, usage from
    the upstream's usage chunk if one came) and ``message_stop``; a second call sends nothing.
    An upstream ``{"error": ...}`` chunk becomes an ``error`` event, after which nothing is sent.
    ``reasoning_tokens`` is the reasoning part of the output the usage chunk reported (the hub's
    usage has no field for it, and the usage event records it).
    """

    def __init__(self, *, model: str, message_id: str) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._done = False
        self._next_index = 0
        # The open live block: (kind, Anthropic index), or None.
        self._open: tuple[str, int] | None = None
        self._held_text = ""  # leading whitespace, held until real text arrives
        self._calls: dict[int, _ToolCall] = {}
        self._live_call: int | None = None
        # Text and reasoning that arrived after tool calls began: sent after them, in order.
        self._late: list[tuple[str, str]] = []
        self._finish_reason: str | None = None
        self._usage: JSON = zero_usage()
        self.reasoning_tokens = 0

    @property
    def usage(self) -> Usage:
        return normalize_usage(self._usage)

    def feed(self, chunk: JSON) -> list[HubEvent]:
        if self._done or not isinstance(chunk, dict):
            return []
        out: list[HubEvent] = []
        if "error" in chunk and chunk.get("error") is not None:
            return self._error(chunk)
        self._start(out)
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_from_openai(chunk["usage"])
            self.reasoning_tokens = reasoning_tokens_from_openai(chunk["usage"])
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            return out
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._on_delta(delta, out)
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
            self._close_all(out)
        return out

    def finish(self) -> list[HubEvent]:
        if self._done:
            return []
        out: list[HubEvent] = []
        self._start(out)
        self._close_all(out)
        self._done = True
        called = any(call.opened for call in self._calls.values())
        stop_reason = "tool_use" if called else stop_reason_for(self._finish_reason)
        out += message_end_events(
            stop_reason=stop_reason, stop_sequence=None, usage=dict(self._usage)
        )
        return out

    # --- message ------------------------------------------------------------------------------

    def _start(self, out: list[HubEvent]) -> None:
        if self._started:
            return
        self._started = True
        out.append(
            message_start_event(message_id=self._message_id, model=self._model, usage=zero_usage())
        )

    def _error(self, chunk: Mapping[str, Any]) -> list[HubEvent]:
        self._done = True
        _status, body = openai_error_to_anthropic(500, dict(chunk))
        return [("error", body)]

    # --- deltas -------------------------------------------------------------------------------

    def _on_delta(self, delta: Mapping[str, Any], out: list[HubEvent]) -> None:
        for name in ("reasoning_content", "reasoning"):
            reasoning = delta.get(name)
            if isinstance(reasoning, str) and reasoning:
                self._on_stream_text(_THINKING, reasoning, out)
                break
        for name in ("content", "refusal"):
            text = delta.get(name)
            if isinstance(text, str) and text:
                self._on_stream_text(_TEXT, text, out)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._on_tool_fragment(call, out)

    def _on_stream_text(self, kind: str, text: str, out: list[HubEvent]) -> None:
        if self._calls:
            self._late.append((kind, text))
            return
        self._emit_text(kind, text, out)

    def _emit_text(self, kind: str, text: str, out: list[HubEvent]) -> None:
        if self._open is not None and self._open[0] != kind:
            self._close_open(out)
        if self._open is None:
            if kind == _TEXT:
                # A blank text block must never reach the client (Bedrock rejects it on replay).
                text = self._held_text + text
                if is_blank(text):
                    self._held_text = text
                    return
                self._held_text = ""
                self._open_block(_TEXT, {"type": "text", "text": ""}, out)
            else:
                self._open_block(
                    _THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out
                )
        if kind == _TEXT:
            self._delta({"type": "text_delta", "text": text}, out)
        else:
            self._delta({"type": "thinking_delta", "thinking": text}, out)

    def _on_tool_fragment(self, fragment: Mapping[str, Any], out: list[HubEvent]) -> None:
        index = fragment.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            # Some servers omit the index: a fragment with an id starts the next call, one
            # without continues the latest.
            if fragment.get("id") or not self._calls:
                index = max(self._calls, default=-1) + 1
            else:
                index = max(self._calls)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _ToolCall()
            if self._open is not None and self._open[0] != _TOOL:
                self._close_open(out)
            self._held_text = ""
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        if not call.id and isinstance(fragment.get("id"), str):
            call.id = fragment["id"]
        if not call.name and isinstance(function.get("name"), str):
            call.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # Ollama sends the object itself
            arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
        fragment_text = arguments if isinstance(arguments, str) else ""
        if self._live_call is None and call.name:
            self._live_call = index
            self._open_call(index, call, out)
        if call.opened and self._live_call == index and self._open is not None:
            if fragment_text:
                call.received_arguments = True
                self._delta({"type": "input_json_delta", "partial_json": fragment_text}, out)
        else:
            # Kept for when the call is sent whole. (A fragment for a call already closed by
            # finish_reason has nowhere to go: no upstream sends one.)
            call.arguments += fragment_text

    def _open_call(self, index: int, call: _ToolCall, out: list[HubEvent]) -> None:
        call.opened = True
        call_id = call.id or f"toolu_{self._message_id}_{index}"
        self._open_block(
            _TOOL, {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}, out
        )
        if call.arguments:
            call.received_arguments = True
            self._delta({"type": "input_json_delta", "partial_json": call.arguments}, out)
            call.arguments = ""

    # --- blocks -------------------------------------------------------------------------------

    def _open_block(self, kind: str, content_block: JSON, out: list[HubEvent]) -> None:
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index)
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": content_block},
            )
        )

    def _delta(self, delta: JSON, out: list[HubEvent]) -> None:
        assert self._open is not None
        out.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": self._open[1], "delta": delta},
            )
        )

    def _close_open(self, out: list[HubEvent]) -> None:
        if self._open is None:
            return
        kind, index = self._open
        if kind == _TOOL and self._live_call is not None:
            call = self._calls[self._live_call]
            if not call.received_arguments:
                # Clients parse the joined partial_json: a call without arguments needs "{}".
                self._delta({"type": "input_json_delta", "partial_json": "{}"}, out)
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        self._open = None

    def _close_all(self, out: list[HubEvent]) -> None:
        """Close the live block, then send every held tool call and late text, in order."""
        self._close_open(out)
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.opened:
                continue
            if not call.name and not call.arguments:
                continue  # a fragment that never named a function: nothing to call
            self._open_call(index, call, out)
            self._live_call = index
            self._close_open(out)
        late, self._late = self._late, []
        for kind, text in late:
            self._emit_text(kind, text, out)
        self._close_open(out)
        self._held_text = ""
