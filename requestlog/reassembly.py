"""Streamed answers folded back into the final message the client would have got whole.

Pure functions over the bytes the client received: Anthropic SSE becomes an Anthropic Message
(through ``proxy.translation.hub_stream.assemble_message``), OpenAI chat chunks a
``chat.completion``, OpenAI completion chunks a ``text_completion``. A stream that was cut
(truncated capture, client gone) gives what it held so far; bytes that do not parse give None.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.translation.hub_stream import assemble_message

JSON = dict[str, Any]


def sse_payloads(raw: bytes) -> list[tuple[str, Any]]:
    """``(event name, parsed data)`` of each SSE event; data that is not JSON is skipped."""
    events: list[tuple[str, Any]] = []
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name = ""
        data_lines: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip())
        if not data_lines:
            continue
        payload = "\n".join(data_lines)
        if payload == "[DONE]":
            continue
        try:
            events.append((name, json.loads(payload)))
        except (ValueError, RecursionError):
            continue
    return events


def anthropic_message(raw: bytes) -> JSON | None:
    events = [
        (name or str(data.get("type", "")), data)
        for name, data in sse_payloads(raw)
        if isinstance(data, dict)
    ]
    errors = [data for name, data in events if name == "error"]
    if not any(name == "message_start" for name, _ in events):
        return errors[-1] if errors else None
    try:
        message = assemble_message(
            [
                (name, data)
                for name, data in events
                if name in ("message_start", "content_block_start", "content_block_delta")
                or name == "message_delta"
            ]
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if errors:
        message["error"] = errors[-1].get("error")
    return message


def _merge_tool_calls(target: list[JSON], deltas: list[Any]) -> None:
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", len(target))
        if not isinstance(index, int) or index < 0 or index > len(target):
            index = len(target)
        if index == len(target):
            target.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = target[index]
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                call["function"]["name"] += str(function["name"])
            if function.get("arguments"):
                call["function"]["arguments"] += str(function["arguments"])


def openai_chat_completion(raw: bytes) -> JSON | None:
    chunks = [data for _, data in sse_payloads(raw) if isinstance(data, dict)]
    if not chunks:
        return None
    result: JSON = {"object": "chat.completion", "choices": []}
    choices: dict[int, JSON] = {}
    for chunk in chunks:
        if "error" in chunk and "choices" not in chunk:
            result["error"] = chunk["error"]
            continue
        for name in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if name in chunk and chunk[name] is not None:
                result[name] = chunk[name]
        if isinstance(chunk.get("usage"), dict):
            result["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            merged = choices.setdefault(
                index,
                {
                    "index": index,
                    "message": {"role": "assistant", "content": None},
                    "finish_reason": None,
                },
            )
            delta = choice.get("delta") or {}
            message = merged["message"]
            for key, value in delta.items():
                if key == "tool_calls" and isinstance(value, list):
                    _merge_tool_calls(message.setdefault("tool_calls", []), value)
                elif key == "role":
                    message["role"] = value
                elif isinstance(value, str):
                    message[key] = (message.get(key) or "") + value
                elif value is not None:
                    message[key] = value
            if choice.get("finish_reason") is not None:
                merged["finish_reason"] = choice["finish_reason"]
            if "logprobs" in choice:
                merged["logprobs"] = choice["logprobs"]
    result["choices"] = [choices[index] for index in sorted(choices)]
    return result


def openai_text_completion(raw: bytes) -> JSON | None:
    chunks = [data for _, data in sse_payloads(raw) if isinstance(data, dict)]
    if not chunks:
        return None
    result: JSON = {"object": "text_completion", "choices": []}
    choices: dict[int, JSON] = {}
    for chunk in chunks:
        for name in ("id", "created", "model"):
            if name in chunk:
                result[name] = chunk[name]
        if isinstance(chunk.get("usage"), dict):
            result["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            merged = choices.setdefault(index, {"index": index, "text": "", "finish_reason": None})
            merged["text"] += str(choice.get("text") or "")
            if choice.get("finish_reason") is not None:
                merged["finish_reason"] = choice["finish_reason"]
    result["choices"] = [choices[index] for index in sorted(choices)]
    return result


def reassemble(surface: str, raw: bytes) -> JSON | None:
    """The final message of a stream the client of ``surface`` received, or None."""
    if surface == "messages":
        return anthropic_message(raw)
    if surface == "chat":
        return openai_chat_completion(raw)
    if surface == "completions":
        return openai_text_completion(raw)
    return None
