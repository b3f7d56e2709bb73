"""A small asyncio HTTP/1.1 load generator for latency and streaming timings (not throughput).

wrk measures throughput; this client measures what wrk cannot: the latency of one request at a
time, and per-stream timings of SSE answers (time to first body byte, the gap between consecutive
``content_block_delta`` events). It speaks just enough HTTP/1.1 over raw asyncio streams
(keep-alive, Content-Length and chunked bodies) so its own overhead is small and the same for
every target. Run it in its own process, pinned to the load generator's core:

    python -m bench.loadgen latency --url http://127.0.0.1:8999/v1/messages \\
        --body-file body.json --header x-api-key:k --requests 2000
    python -m bench.loadgen stream --url ... --body-file stream.json --concurrency 32 --streams 96
    python -m bench.loadgen stream ... --concurrency 32 --streams 96 --stagger-ms 40

It prints one JSON object on stdout (times in milliseconds). ``--events openai`` times OpenAI
chat chunks instead: an event is a text delta when one of its choices carries non-empty
``delta.content`` (the role-only first chunk, the finish chunk and the usage chunk are not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DELTA_MARKER = b"content_block_delta"
_CONTENT = b'"content"'


def anthropic_text_delta(event: bytes) -> bool:
    return DELTA_MARKER in event


def openai_text_delta(event: bytes) -> bool:
    """An OpenAI chat chunk with text in one of its choices' deltas."""
    if _CONTENT not in event:
        return False
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        try:
            data = json.loads(line[5:])
        except ValueError:
            return False
        choices = data.get("choices") if isinstance(data, dict) else None
        return isinstance(choices, list) and any(
            isinstance(choice, dict)
            and isinstance(choice.get("delta"), dict)
            and bool(choice["delta"].get("content"))
            for choice in choices
        )
    return False


EVENT_KINDS: dict[str, Callable[[bytes], bool]] = {
    "anthropic": anthropic_text_delta,
    "openai": openai_text_delta,
}


class ProtocolError(Exception):
    """The server answered something this client cannot read."""


@dataclass
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, got {url!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.hostname, parts.port or 80, path)


def build_request(target: Target, body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """The raw bytes of one POST; built once and sent as they are for every request."""
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"host: {target.host}:{target.port}",
        f"content-length: {len(body)}",
        "connection: keep-alive",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Exchange:
    """One request's outcome and timings (seconds since the request was written)."""

    status: int = 0
    headers_at: float = 0.0
    first_body_at: float | None = None
    done_at: float = 0.0
    delta_times: list[float] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool = True


class SSEClock:
    """Timestamps each complete SSE event that is a text delta as it arrives
    (``content_block_delta`` unless another ``is_delta`` is given)."""

    def __init__(
        self,
        started: float,
        times: list[float],
        is_delta: Callable[[bytes], bool] = anthropic_text_delta,
    ) -> None:
        self._buffer = b""
        self._started = started
        self._times = times
        self._is_delta = is_delta

    def feed(self, data: bytes, now: float) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return
            event = self._buffer[:end]
            self._buffer = self._buffer[end + 2 :]
            if self._is_delta(event):
                self._times.append(now - self._started)


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(
        self, target: Target, is_delta: Callable[[bytes], bool] = anthropic_text_delta
    ) -> None:
        self.target = target
        self.is_delta = is_delta
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, limit=1 << 20
        )

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, raw: bytes, *, keep_body: bool = False) -> Exchange:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        exchange = Exchange()
        started = time.perf_counter()
        self.writer.write(raw)
        try:
            await self._read_response(self.reader, exchange, started, keep_body)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            await self.close()
            raise
        exchange.done_at = time.perf_counter() - started
        if not exchange.keep_alive:
            await self.close()
        return exchange

    async def _read_response(
        self, reader: asyncio.StreamReader, exchange: Exchange, started: float, keep_body: bool
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        exchange.headers_at = time.perf_counter() - started
        lines = head.decode("latin-1").split("\r\n")
        try:
            exchange.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"bad status line {lines[0]!r}") from exc
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        exchange.keep_alive = headers.get("connection", "").lower() != "close"
        is_sse = headers.get("content-type", "").startswith("text/event-stream")
        clock = SSEClock(started, exchange.delta_times, self.is_delta) if is_sse else None
        parts: list[bytes] = []

        def take(data: bytes) -> None:
            now = time.perf_counter()
            if exchange.first_body_at is None and data:
                exchange.first_body_at = now - started
            if clock is not None:
                clock.feed(data, now)
            if keep_body:
                parts.append(data)

        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers are expected
                    break
                take((await reader.readexactly(size + 2))[:-2])
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length:
                take(await reader.readexactly(length))
        else:
            take(await reader.read())
            exchange.keep_alive = False
        exchange.body = b"".join(parts)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the sample itself, not an interpolation)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


async def measure_latency(
    target: Target,
    raw: bytes,
    *,
    requests: int,
    warmup: int,
) -> dict[str, Any]:
    """Requests one after another on one connection: the latency of a request alone."""
    connection = Connection(target)
    latencies: list[float] = []
    errors = 0
    try:
        for number in range(warmup + requests):
            try:
                exchange = await connection.send(raw)
            except (OSError, asyncio.IncompleteReadError, ProtocolError):
                errors += 1
                continue
            if exchange.status != 200:
                errors += 1
                continue
            if number >= warmup:
                latencies.append(exchange.done_at)
    finally:
        await connection.close()
    return {
        "requests": requests,
        "ok": len(latencies),
        "errors": errors,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p90_ms": _ms(percentile(latencies, 90)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "mean_ms": _ms(statistics.fmean(latencies)) if latencies else None,
    }


async def measure_streams(
    target: Target,
    raw: bytes,
    *,
    concurrency: int,
    streams: int,
    warmup: int,
    expect_deltas: int | None,
    events: str = "anthropic",
    stagger_ms: float = 0.0,
) -> dict[str, Any]:
    """``streams`` streamed requests, ``concurrency`` at a time, each worker on its own
    connection. A stream counts as an error unless it is a 200 that ends normally (and carries
    ``expect_deltas`` text deltas when given). The workers start together (a burst), or, with
    ``stagger_ms``, worker ``k`` starts ``k × stagger_ms`` after the first (after the warm-up):
    streams of equal length then keep starting that far apart."""
    ttfb: list[float] = []
    headers_at: list[float] = []
    gaps: list[float] = []
    totals: list[float] = []
    errors = 0
    remaining = streams
    lock = asyncio.Lock()

    async def take_one() -> bool:
        nonlocal remaining
        async with lock:
            if remaining <= 0:
                return False
            remaining -= 1
            return True

    async def worker(index: int) -> None:
        nonlocal errors
        connection = Connection(target, EVENT_KINDS[events])
        try:
            for _ in range(warmup):
                try:
                    await connection.send(raw)
                except (OSError, asyncio.IncompleteReadError, ProtocolError):
                    await connection.close()
            await asyncio.sleep(index * stagger_ms / 1000)
            while await take_one():
                try:
                    exchange = await connection.send(raw)
                except (OSError, asyncio.IncompleteReadError, ProtocolError):
                    errors += 1
                    continue
                deltas = exchange.delta_times
                complete = exchange.status == 200 and exchange.first_body_at is not None
                if expect_deltas is not None and len(deltas) != expect_deltas:
                    complete = False
                if not complete:
                    errors += 1
                    continue
                assert exchange.first_body_at is not None
                ttfb.append(exchange.first_body_at)
                headers_at.append(exchange.headers_at)
                totals.append(exchange.done_at)
                gaps.extend(
                    later - earlier for earlier, later in zip(deltas, deltas[1:], strict=False)
                )
        finally:
            await connection.close()

    await asyncio.gather(*(worker(index) for index in range(concurrency)))
    return {
        "streams": streams,
        "concurrency": concurrency,
        "stagger_ms": stagger_ms,
        "ok": len(ttfb),
        "errors": errors,
        "ttfb_p50_ms": _ms(percentile(ttfb, 50)),
        "ttfb_p99_ms": _ms(percentile(ttfb, 99)),
        "headers_p50_ms": _ms(percentile(headers_at, 50)),
        "total_p50_ms": _ms(percentile(totals, 50)),
        "gap_p50_ms": _ms(percentile(gaps, 50)) if gaps else None,
        "gap_p99_ms": _ms(percentile(gaps, 99)) if gaps else None,
        "gaps": len(gaps),
    }


def _parse_headers(values: Sequence[str]) -> list[tuple[str, str]]:
    headers = []
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"header must be NAME:VALUE, got {value!r}")
        headers.append((name.strip(), content.strip()))
    return headers


def _install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("mode", choices=("latency", "stream"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable")
    parser.add_argument("--requests", type=int, default=1000, help="latency mode: requests")
    parser.add_argument("--streams", type=int, default=20, help="stream mode: streams in all")
    parser.add_argument("--concurrency", type=int, default=1, help="stream mode: at a time")
    parser.add_argument("--warmup", type=int, default=20, help="requests before measuring")
    parser.add_argument(
        "--expect-deltas", type=int, default=None, help="stream mode: text deltas per stream"
    )
    parser.add_argument(
        "--stagger-ms",
        type=float,
        default=0.0,
        help="stream mode: start worker k this many ms × k after the first (0: all at once)",
    )
    parser.add_argument(
        "--events",
        choices=sorted(EVENT_KINDS),
        default="anthropic",
        help="stream mode: the SSE dialect whose text deltas are timed",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.streams < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("counts must be positive")
    if args.stagger_ms < 0:
        parser.error("--stagger-ms must not be negative")
    try:
        target = Target.from_url(args.url)
        headers = _parse_headers(args.header)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    body = Path(args.body_file).read_bytes()
    raw = build_request(target, body, headers)
    _install_fast_loop()
    if args.mode == "latency":
        result = asyncio.run(
            measure_latency(target, raw, requests=args.requests, warmup=args.warmup)
        )
    else:
        result = asyncio.run(
            measure_streams(
                target,
                raw,
                concurrency=args.concurrency,
                streams=args.streams,
                warmup=args.warmup,
                expect_deltas=args.expect_deltas,
                events=args.events,
                stagger_ms=args.stagger_ms,
            )
        )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
