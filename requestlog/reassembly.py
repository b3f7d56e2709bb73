"""Streamed answers folded back into the final message the client would have got whole.

Pure functions over the bytes the client received: Anthropic SSE becomes an Anthropic Message
(through ``proxy.translation.hub_stream.assemble_message``), OpenAI chat chunks a
``chat.completion`` (the pieces of a spoken answer, ``delta.audio``, joined into one
``message.audio``), OpenAI completion chunks a ``text_completion``. A stream that was cut
(truncated capture, client gone) gives what it held so far; bytes that do not parse give None.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from proxy import jsonio
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
            events.append((name, jsonio.loads(payload)))
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


def _merge_audio(parts: JSON, delta: JSON) -> None:
    """One ``delta.audio`` update: pieces of base64 data and of transcript, an id, an expiry."""
    for key, value in delta.items():
        if key == "data" and isinstance(value, str):
            parts.setdefault("data", []).append(value)
        elif key == "transcript" and isinstance(value, str):
            parts["transcript"] = parts.get("transcript", "") + value
        elif value is not None:
            parts[key] = value


def _whole_audio(parts: JSON) -> JSON:
    """The audio of a non-streamed answer (``id``, ``data``, ``expires_at``, ``transcript``)
    from its streamed pieces."""
    audio = {key: value for key, value in parts.items() if key != "data"}
    pieces: list[str] = parts.get("data", [])
    joined = "".join(pieces)
    try:
        # Pieces cut from one encoding join as they are ...
        data = base64.b64decode(joined, validate=True)
    except (binascii.Error, ValueError):
        try:
            # ... pieces encoded one by one (each padded) are decoded one by one.
            data = b"".join(base64.b64decode(piece, validate=True) for piece in pieces)
        except (binascii.Error, ValueError):
            audio["data"] = joined
            return audio
    audio["data"] = base64.b64encode(data).decode("ascii")
    return audio


def openai_chat_completion(raw: bytes) -> JSON | None:
    chunks = [data for _, data in sse_payloads(raw) if isinstance(data, dict)]
    if not chunks:
        return None
    result: JSON = {"object": "chat.completion", "choices": []}
    choices: dict[int, JSON] = {}
    audio_parts: dict[int, JSON] = {}
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
                elif key == "audio" and isinstance(value, dict):
                    _merge_audio(audio_parts.setdefault(index, {}), value)
                elif key == "images" and isinstance(value, list):
                    message.setdefault("images", []).extend(value)
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
    for index, parts in audio_parts.items():
        choices[index]["message"]["audio"] = _whole_audio(parts)
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


def spoken_answer_references(message: Any) -> dict[int, str]:
    """``choice index -> stored audio data`` of a chat completion (after media extraction)."""
    found: dict[int, str] = {}
    choices = message.get("choices") if isinstance(message, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        audio = (choice.get("message") or {}).get("audio") if isinstance(choice, dict) else None
        if isinstance(audio, dict) and isinstance(audio.get("data"), str):
            found[int(choice.get("index") or 0)] = audio["data"]
    return found


def stream_audio_replaced(raw: bytes, references: dict[int, str]) -> bytes:
    """A chat stream with each ``delta.audio.data`` piece replaced by the reference of the
    whole audio it belongs to: the raw stream kept beside the answer must not hold the media
    a second time. Frames without audio stay byte for byte as they were."""
    lines = raw.split(b"\n")
    for position, line in enumerate(lines):
        if not line.startswith(b"data:") or b'"audio"' not in line:
            continue
        try:
            chunk = jsonio.loads(line[5:])
        except (ValueError, RecursionError):
            continue
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        changed = False
        for choice in choices if isinstance(choices, list) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            audio = delta.get("audio") if isinstance(delta, dict) else None
            if isinstance(audio, dict) and isinstance(audio.get("data"), str):
                audio["data"] = references.get(int(choice.get("index") or 0), "")
                changed = True
        if changed:
            lines[position] = b"data: " + json.dumps(chunk, ensure_ascii=False).encode()
    return b"\n".join(lines)
