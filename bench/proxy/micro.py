"""Micro-benchmarks behind two stack choices; runs in the bench tools venv (orjson, aiohttp).

- ``json``: parsing (and re-encoding) a typical Claude Code Messages request body with the
  standard library's json vs orjson.
- ``transport``: an httpx.AsyncClient calling the fake upstream with httpx's default transport
  (httpcore) vs the aiohttp-backed transport of ``httpx-aiohttp``, one request at a time and
  64 at a time.

    bench/.venv-tools/bin/python -m bench.proxy.micro json
    bench/.venv-tools/bin/python -m bench.proxy.micro transport --url http://127.0.0.1:PORT

Each prints one JSON object. Times are per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

TOOL_COUNT = 18
TURNS = 24


def typical_request_body() -> bytes:
    """A Claude Code-like request: long system prompt, ~20 tools with schemas, a few dozen
    turns with tool use and results (about 60 KB)."""
    tools = [
        {
            "name": f"tool_{index}",
            "description": "Runs a step of the task. " * 12,
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "A file path in the work tree."},
                    "pattern": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "options": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["path"],
            },
        }
        for index in range(TOOL_COUNT)
    ]
    messages: list[dict[str, Any]] = []
    for turn in range(TURNS):
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{turn:04d}",
                        "content": "line of output from the tool\n" * 20,
                    }
                ]
                if turn
                else "Please refactor the parser module and keep the tests green.",
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking at the next file. " * 3},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{turn + 1:04d}",
                        "name": f"tool_{turn % TOOL_COUNT}",
                        "input": {"path": f"src/module_{turn}.py", "limit": 200},
                    },
                ],
            }
        )
    messages.append({"role": "user", "content": "Continue."})
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are a coding agent. " * 400},
            {
                "type": "text",
                "text": "Project notes. " * 200,
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": tools,
        "messages": messages,
        "metadata": {"user_id": json.dumps({"session": "0f3c", "account": "a1"})},
        "thinking": {"type": "adaptive"},
    }
    return json.dumps(body).encode()


def _per_call_us(function: Callable[[], Any], *, seconds: float) -> float:
    """Median over 5 rounds of the mean time of one call, in microseconds."""
    rounds = []
    for _ in range(5):
        calls = 0
        started = time.perf_counter()
        deadline = started + seconds / 5
        while True:
            for _ in range(20):
                function()
            calls += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        rounds.append((now - started) / calls * 1e6)
    return round(statistics.median(rounds), 2)


def json_choice(seconds: float) -> dict[str, Any]:
    import orjson

    body = typical_request_body()
    data = json.loads(body)
    return {
        "body_bytes": len(body),
        "loads_us": {
            "json": _per_call_us(lambda: json.loads(body), seconds=seconds),
            "orjson": _per_call_us(lambda: orjson.loads(body), seconds=seconds),
        },
        "dumps_us": {
            "json": _per_call_us(
                lambda: json.dumps(data, separators=(",", ":")).encode(), seconds=seconds
            ),
            "orjson": _per_call_us(lambda: orjson.dumps(data), seconds=seconds),
        },
    }


async def _transport_run(client: Any, url: str, body: bytes, *, requests: int, concurrency: int):
    headers = {"content-type": "application/json", "x-api-key": "sk-ant-bench"}
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            await response.aread()
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"fake answered {response.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "cpu_ms_per_request": None,
    }


async def transport_choice(url: str, requests: int) -> dict[str, Any]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    body = json.dumps(
        {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        }
    ).encode()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    results: dict[str, Any] = {}
    for name in ("httpx-default", "httpx-aiohttp"):
        runs = []
        for concurrency in (1, 64):
            transport = (
                AiohttpTransport(limits=limits, trust_env=False)
                if name == "httpx-aiohttp"
                else None
            )
            async with httpx.AsyncClient(
                transport=transport, limits=limits, trust_env=False, timeout=30
            ) as client:
                await _transport_run(client, url, body, requests=50, concurrency=concurrency)
                cpu_before = time.process_time()
                run = await _transport_run(
                    client, url, body, requests=requests, concurrency=concurrency
                )
                run["cpu_ms_per_request"] = round(
                    (time.process_time() - cpu_before) / run["requests"] * 1000, 4
                )
            runs.append(run)
        results[name] = runs
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.micro", description=__doc__)
    parser.add_argument("what", choices=("json", "transport"))
    parser.add_argument("--url", help="transport: the fake upstream's /v1/messages URL")
    parser.add_argument("--seconds", type=float, default=2.0, help="json: time per variant")
    parser.add_argument("--requests", type=int, default=3000, help="transport: per variant")
    args = parser.parse_args(argv)
    if args.what == "json":
        result = json_choice(args.seconds)
    else:
        if not args.url:
            parser.error("transport needs --url")
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
        result = asyncio.run(transport_choice(args.url, args.requests))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
