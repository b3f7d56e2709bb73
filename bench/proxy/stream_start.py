"""Where a stream's first byte goes at concurrency 1: the fake's Anthropic stream called
directly, through the gateway, and the gateway's fallback (Anthropic 529, then Bedrock
InvokeModel with response stream), each started back to back and one every 1.3 s.

Why both spacings: the full benchmark's streams at concurrency 1 take 64 deltas 20 ms apart,
so each starts about 1.3 s after the one before, and a gateway worker runs its once-a-second
background checks (the key cache's invalidation generation in Redis and the database, the
circuits' shared state) on the path of every such stream's start. Streams back to back share
one check among hundreds. The difference between the two is what those checks cost a request
that arrives after a quiet second; the rest is the gateway's own path.

Each stream is one HTTP/1.1 request on a fresh connection from this process (no load
generator): the first byte is the first byte of the body after the response head. Then the
gateway worker is profiled with py-spy while it serves fallback streams back to back.

    bench/run --stream-start --repetitions 3

Writes ``bench/results/stream-start-<timestamp>.json`` and prints a short table.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from bench.proxy import profile as profiler
from bench.proxy.rounds import ComparisonRun
from bench.proxy.targets import direct_target, fallback_headers, request_body

# The full benchmark's stream: 64 deltas 20 ms apart (bench.proxy_bench.TEXT_DELTAS).
PACED_SPACING_SECONDS = 1.3
BACK_TO_BACK = 200
PACED = 12
PROFILE_SECONDS = 8


def first_byte_seconds(url: str, headers: Sequence[tuple[str, str]], body: bytes) -> float:
    """Send one request; the time to the first body byte (the rest is read and dropped)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {parts.path} HTTP/1.1", f"host: {host}", "connection: close"]
    head.append(f"content-length: {len(body)}")
    head += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection((host, port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        received = b""
        first: float | None = None
        while chunk := connection.recv(65536):
            received += chunk
            end = received.find(b"\r\n\r\n")
            if first is None and end >= 0 and len(received) > end + 4:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"no body from {url}: {received[:200]!r}")
    return first


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def run_stream_start(plan: Any, *, database_url: str, redis_url: str) -> None:
    from bench import proxy_bench as bench

    with ComparisonRun("stream-start", plan) as run:
        context = run.start_fakes(openai=False)
        fake_url = context.fake.base_url
        env, access_key = run.prepared_gateway_env(
            fake_url=fake_url, database_url=database_url, redis_url=redis_url,
            source=context.source,
        )  # fmt: skip
        gateway = run.gateway("gateway", env, access_key, context.source)
        assert gateway.server is not None  # noqa: S101 - a started server
        direct = direct_target(fake_url)
        routes = {
            "direct": (direct.messages_url, direct.headers),
            "gateway": (gateway.messages_url, gateway.headers),
            "fallback": (gateway.messages_url, fallback_headers(gateway.headers)),
        }
        unpaced = request_body(stream=True, paced=False)
        for url, headers in routes.values():  # warm every path once
            for _ in range(20):
                first_byte_seconds(url, headers, unpaced)

        rounds: list[dict[str, Any]] = []
        for repetition in range(plan.repetitions):
            bench.say(f"round {repetition + 1} of {plan.repetitions}")
            measured: dict[str, Any] = {}
            for spacing, paced, count in (
                ("back_to_back", False, BACK_TO_BACK),
                ("paced", True, PACED),
            ):
                body = request_body(stream=True, paced=paced)
                for name, (url, headers) in routes.items():
                    times = []
                    for _ in range(count):
                        started = time.monotonic()
                        times.append(first_byte_seconds(url, headers, body))
                        if paced:
                            time.sleep(
                                max(0.0, PACED_SPACING_SECONDS - (time.monotonic() - started))
                            )
                    measured[f"{spacing}_{name}_ms"] = _median_ms(times)
            rounds.append(measured)

        bench.say("profiling the gateway worker with py-spy (fallback streams, back to back)")
        raw = run.work / "fallback-profile.txt"
        recording = threading.Thread(
            target=profiler.record,
            kwargs={"pid": gateway.server.pid, "seconds": PROFILE_SECONDS, "output": raw},
        )
        recording.start()
        url, headers = routes["fallback"]
        while recording.is_alive():
            first_byte_seconds(url, headers, unpaced)
        recording.join()
        profile = profiler.summarise(raw.read_text()) if raw.exists() else None

    keys = sorted(rounds[0])
    summary: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in rounds), 2) for key in keys
    }
    for spacing in ("back_to_back", "paced"):
        direct = summary[f"{spacing}_direct_ms"]
        for name in ("gateway", "fallback"):
            summary[f"{spacing}_{name}_added_ms"] = round(
                summary[f"{spacing}_{name}_ms"] - direct, 2
            )
    summary["fallback_profile"] = profile
    lines = [
        "| streams started | direct p50 ms | gateway added ms | fallback added ms |",
        "|---|---:|---:|---:|",
    ]
    for spacing, label in (("back_to_back", "back to back"), ("paced", "1.3 s apart")):
        gateway_added = summary[f"{spacing}_gateway_added_ms"]
        fallback_added = summary[f"{spacing}_fallback_added_ms"]
        lines.append(
            f"| {label} | {summary[f'{spacing}_direct_ms']} | {gateway_added} | {fallback_added} |"
        )
    run.finish(summary, "\n".join(lines), rounds)
