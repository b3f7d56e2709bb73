"""Micro-benchmark: CPU cost of serving an OpenAI client through the Anthropic hub.

One "request" is what the OpenAI chat surface does for a streamed answer:

- the ~10 KB ``chat.completions`` request body is parsed, translated to the hub
  (``chat_request_to_anthropic``) and encoded for the upstream;
- a 200-event Anthropic stream is parsed event by event, translated
  (``AnthropicToChatChunks``) and each chunk encoded for the client.

The baseline is a passthrough of the same data: parse and re-encode the request body and every
event, nothing else. The difference is what translation adds per request (target ≤ 0.3 ms).

    .venv/bin/python -m bench.proxy.translate_micro [--repeat 15] [--number 200] [--json stdlib]

Prints one JSON object; times are microseconds per request, best of ``--repeat`` runs of
``--number`` requests each (the best run is the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from proxy.translation.openai_chat import chat_request_to_anthropic
from proxy.translation.openai_stream import AnthropicToChatChunks

STREAM_EVENTS = 200


def _codec(name: str) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    if name == "orjson":
        import orjson

        return orjson.loads, orjson.dumps
    return json.loads, lambda value: json.dumps(value, separators=(",", ":")).encode()


def chat_request_body() -> bytes:
    """A ~10 KB OpenAI chat request: system prompt, tools, a few turns with tool calls."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{index}",
                "description": "Runs one step of the task and reports back. " * 3,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "A file path."},
                        "limit": {"type": "integer", "minimum": 1},
                    },
                    "required": ["path"],
                },
            },
        }
        for index in range(10)
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful coding assistant. " * 20}
    ]
    for turn in range(7):
        messages.append({"role": "user", "content": f"Step {turn}: look at the next file. " * 6})
        messages.append(
            {
                "role": "assistant",
                "content": "Reading it.",
                "tool_calls": [
                    {
                        "id": f"call_{turn}",
                        "type": "function",
                        "function": {
                            "name": "tool_1",
                            "arguments": json.dumps({"path": f"src/m{turn}.py"}),
                        },
                    }
                ],
            }
        )
        messages.append(
            {"role": "tool", "tool_call_id": f"call_{turn}", "content": "ok line\n" * 30}
        )
    messages.append({"role": "user", "content": "Summarise what you found."})
    body = {
        "model": "gpt-4o",
        "messages": messages,
        "tools": tools,
        "max_tokens": 2048,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return json.dumps(body).encode()


def anthropic_stream_events() -> list[tuple[str, bytes]]:
    """200 Anthropic events as their SSE data lines: start, one text block, delta, stop."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 2500, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for index in range(STREAM_EVENTS - 5):
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"word{index} and more "},
                },
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 600},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert len(events) == STREAM_EVENTS
    return [(name, json.dumps(data).encode()) for name, data in events]


def passthrough(body: bytes, events: list[tuple[str, bytes]], loads: Any, dumps: Any) -> None:
    dumps(loads(body))
    for _name, data in events:
        dumps(loads(data))


def translated(body: bytes, events: list[tuple[str, bytes]], loads: Any, dumps: Any) -> None:
    dumps(chat_request_to_anthropic(loads(body), default_max_tokens=4096))
    translator = AnthropicToChatChunks(
        model="gpt-4o", completion_id="chatcmpl-1", created=1, include_usage=True
    )
    for name, data in events:
        for chunk in translator.feed(name, loads(data)):
            dumps(chunk)
    for chunk in translator.finish():
        dumps(chunk)


def best_microseconds(
    runs: dict[str, Callable[[], None]], *, repeat: int, number: int
) -> dict[str, float]:
    """Best CPU time per call of each run, in µs. The runs alternate within each repeat, so a
    burst of load from elsewhere on the machine hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.process_time()
            for _ in range(number):
                run()
            best[name] = min(best[name], (time.process_time() - started) / number)
    return {name: seconds * 1e6 for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--json", choices=("orjson", "stdlib"), default="orjson")
    args = parser.parse_args(argv)
    loads, dumps = _codec(args.json)
    body, events = chat_request_body(), anthropic_stream_events()
    times = best_microseconds(
        {
            "passthrough": lambda: passthrough(body, events, loads, dumps),
            "translated": lambda: translated(body, events, loads, dumps),
        },
        repeat=args.repeat,
        number=args.number,
    )
    base, full = times["passthrough"], times["translated"]
    result = {
        "json": args.json,
        "request_bytes": len(body),
        "stream_events": len(events),
        "passthrough_us": round(base, 1),
        "translated_us": round(full, 1),
        "added_us": round(full - base, 1),
        "target_added_us": 300,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
