"""Micro-benchmark of the usage writer: CPU per record to prepare and write batches of usage
events with their request logs, per logging level, in the writer's own code path
(``usage.recording._write_batch``), without a web server.

The bench's plain Messages request and a short answer, as ``bench/run --log-levels`` sends
them. Run against a scratch database, never a production one (rows are added and not removed):

    DEBUG=true GATEWAY_DATA_DIR=$(mktemp -d) .venv/bin/python -m bench.writer_micro
    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_writer \\
        .venv/bin/python -m bench.writer_micro --levels off,full --batches 40 --profile full

Prints, per level and round (levels alternate), the writer thread's CPU time per record (split
into preparing the logs — redaction, compression — and writing the rows) and the wall time;
``--profile LEVEL`` adds a cProfile of that level's writes (cumulative, top entries).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from typing import Any

ANSWER = json.dumps(
    {
        # Sixteen digits in a row, as in the fake upstream's ids: the redactor's card check
        # looks at every such run.
        "id": "msg_bench0000000000000002",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello, benchmark! Nice to meet you."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 14, "output_tokens": 12},
    }
).encode()
HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "user-agent": "wrk",
    "accept": "*/*",
}


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _records(level: str, count: int) -> list[Any]:
    from bench.proxy.targets import request_body
    from requestlog.capture import LogCapture, ResponseTap
    from usage.recording import UsageRecord

    records = []
    for index in range(count):
        log = None
        if level != "off":
            tap = None
            if level == "full":
                tap = ResponseTap(1 << 20)
                tap.append(ANSWER)
            log = LogCapture(
                level=level,
                surface="messages",
                user_agent="wrk",
                credential_fingerprint="c0ffee123456",
                attempts=[
                    {
                        "provider": "anthropic",
                        "model": "claude-sonnet-4-5",
                        "credential": "c0ffee123456",
                        "outcome": "answered",
                        "status": 200,
                        "latency_ms": 1,
                    }
                ],
                request_body=request_body(stream=False) if level == "full" else None,
                request_headers=dict(HEADERS) if level == "full" else None,
                response=tap,
            )
        records.append(
            UsageRecord(
                provider="anthropic",
                user_id=1,
                access_key_id=1,
                requested_model="claude-sonnet-4-5",
                upstream_model="claude-sonnet-4-5",
                input_tokens=14,
                output_tokens=12,
                latency_ms=3,
                time_to_first_byte_ms=2,
                request_id=f"gwreq_bench{index:08d}",
                log=log,
            )
        )
    return records


def _measure(level: str, *, batches: int, batch_size: int, profiler: Any) -> dict[str, float]:
    from usage import recording

    prepare = write = 0.0
    started = time.perf_counter()
    for _ in range(batches):
        batch = _records(level, batch_size)
        if profiler is not None:
            profiler.enable()
        before = time.thread_time()
        recording._prepare_logs(batch)
        prepared = time.thread_time()
        recording._write_batch(batch)
        done = time.thread_time()
        if profiler is not None:
            profiler.disable()
        prepare += prepared - before
        write += done - prepared
    wall = time.perf_counter() - started
    records = batches * batch_size
    return {
        "prepare_ms": round(prepare / records * 1000, 4),
        "write_ms": round(write / records * 1000, 4),
        "cpu_ms": round((prepare + write) / records * 1000, 4),
        "wall_ms": round(wall / records * 1000, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="off,metadata,full")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="", help="a level to profile with cProfile")
    args = parser.parse_args(argv)
    _setup()
    from django.db import connection

    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    # One warm-up batch per level: imports, compiled patterns, prepared statements.
    for level in levels:
        _measure(level, batches=1, batch_size=args.batch_size, profiler=None)
    results: dict[str, list[dict[str, float]]] = {level: [] for level in levels}
    profiler = cProfile.Profile() if args.profile else None
    for round_index in range(args.rounds):
        order = levels if round_index % 2 == 0 else list(reversed(levels))
        for level in order:
            measured = _measure(
                level,
                batches=args.batches,
                batch_size=args.batch_size,
                profiler=profiler if level == args.profile else None,
            )
            results[level].append(measured)
            print(json.dumps({"round": round_index, "level": level, **measured}))  # noqa: T201
    summary = {
        level: {
            name: round(statistics.median(item[name] for item in rounds), 4) for name in rounds[0]
        }
        for level, rounds in results.items()
    }
    print(json.dumps({"database": connection.vendor, "median": summary}))  # noqa: T201
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
