"""The relay floor: the least a Python proxy can do per request, as a benchmark column.

A raw asyncio HTTP/1.1 relay (uvloop when installed): it reads a request, writes its bytes
unchanged to an upstream over a kept-alive connection, and relays the answer's bytes back as
they arrive (head, then the body by its framing: Content-Length, chunked, or until the upstream
closes). No parsing beyond the heads, no JSON, no authentication, no accounting: whatever the
gateway spends above this relay's CPU per request is what its own features and plumbing cost.

The upstream is chosen by the longest matching path prefix, so one relay serves both surfaces:

    python -m bench.proxy.relay --port 0 \\
        --upstream /v1/chat/=http://127.0.0.1:8998 --upstream /=http://127.0.0.1:8999

prints its base URL on its first stdout line, like the fakes; ``GET /healthz`` is answered by
the relay itself. Scope: what the benchmark sends (requests with a Content-Length body or none,
answers of any HTTP/1.1 framing); anything else gets a 501 and the connection is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"
READ_SIZE = 64 * 1024
HEALTH_PATH = b"/healthz"
NO_BODY_STATUSES = frozenset({204, 304})
NOT_IMPLEMENTED = b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Unsupported(Exception):
    """A request this relay does not forward (it answers 501 and closes the connection)."""


@dataclass(frozen=True, slots=True)
class Head:
    """The parts of a request or response head the relay needs to frame the body."""

    first_line: bytes
    content_length: int | None
    chunked: bool
    close: bool


def parse_head(raw: bytes) -> Head:
    """Framing facts of an HTTP/1.1 head (``raw`` ends with the blank line)."""
    lines = raw[: -len(HEAD_END)].split(b"\r\n")
    content_length: int | None = None
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            content_length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    return Head(first_line=lines[0], content_length=content_length, chunked=chunked, close=close)


def response_status(head: Head) -> int:
    parts = head.first_line.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def pick_upstream(routes: Sequence[tuple[str, tuple[str, int]]], path: str) -> tuple[str, int]:
    """The upstream of the longest prefix of ``path``; ``routes`` are longest first."""
    for prefix, address in routes:
        if path.startswith(prefix):
            return address
    raise Unsupported(f"no upstream for {path}")


@dataclass
class UpstreamPool:
    """Idle kept-alive connections to one upstream; a new one when none is idle."""

    host: str
    port: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    async def acquire(
        self, *, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection, and whether it was kept alive from an earlier request."""
        while self.idle and not fresh:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return reader, writer, False

    def release(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(connection)


async def relay_body(
    head: Head, status: int, upstream: asyncio.StreamReader, client: asyncio.StreamWriter
) -> bool:
    """Copy the answer's body to the client as it arrives; False when the upstream ended it
    by closing (so neither connection can be reused)."""
    if status in NO_BODY_STATUSES or 100 <= status < 200:
        return True
    if head.chunked:
        while True:
            size_line = await upstream.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                client.write(size_line + await upstream.readuntil(b"\r\n"))
                await client.drain()
                return True
            client.write(size_line + await upstream.readexactly(size + 2))
            await client.drain()
    if head.content_length is not None:
        remaining = head.content_length
        while remaining > 0:
            data = await upstream.read(min(remaining, READ_SIZE))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            client.write(data)
            await client.drain()
        return True
    while data := await upstream.read(READ_SIZE):
        client.write(data)
        await client.drain()
    return False


class Relay:
    """Serves client connections, one request at a time per connection (HTTP/1.1 keep-alive)."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes: list[tuple[str, tuple[str, int]]] = []
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        for prefix, url in sorted(routes.items(), key=lambda item: -len(item[0])):
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"only http:// upstreams are supported, got {url!r}")
            address = (parts.hostname, parts.port or 80)
            self.routes.append((prefix, address))
            self.pools.setdefault(address, UpstreamPool(*address))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except Unsupported:
            with contextlib.suppress(ConnectionError):
                writer.write(NOT_IMPLEMENTED)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Relay one request and its answer; whether the client connection stays open."""
        try:
            raw_head = await reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False  # the client closed between requests
        head = parse_head(raw_head)
        if head.chunked:
            raise Unsupported("chunked request bodies")
        body = await reader.readexactly(head.content_length) if head.content_length else b""
        method, _, rest = head.first_line.partition(b" ")
        path = rest.partition(b" ")[0]
        if path == HEALTH_PATH:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            return not head.close
        pool = self.pools[pick_upstream(self.routes, path.decode("latin-1"))]
        upstream_reader, upstream_writer, reused = await pool.acquire()
        try:
            try:
                upstream_writer.write(raw_head + body)
                answer_raw = await upstream_reader.readuntil(HEAD_END)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not reused:
                    raise
                # The upstream closed an idle connection (its keep-alive timeout) just as it
                # was reused; nothing reached the client yet, so once more on a new one.
                upstream_writer.close()
                upstream_reader, upstream_writer, _ = await pool.acquire(fresh=True)
                upstream_writer.write(raw_head + body)
                answer_raw = await upstream_reader.readuntil(HEAD_END)
            answer = parse_head(answer_raw)
            writer.write(answer_raw)
            reusable = await relay_body(answer, response_status(answer), upstream_reader, writer)
        except BaseException:
            upstream_writer.close()
            raise
        if reusable and not answer.close and method != b"HEAD":
            pool.release((upstream_reader, upstream_writer))
        else:
            upstream_writer.close()
        return reusable and not answer.close and not head.close


async def start_server(host: str, port: int, routes: dict[str, str]) -> asyncio.Server:
    """The relay listening on ``host:port`` (0: a free port), in the running loop."""
    relay = Relay(routes)
    return await asyncio.start_server(relay.handle, host, port, limit=1 << 20, backlog=1024)


async def serve(host: str, port: int, routes: dict[str, str]) -> None:
    """Serve until killed; the base URL is the first stdout line."""
    server = await start_server(host, port, routes)
    bound = server.sockets[0].getsockname()
    sys.stdout.write(f"http://{bound[0]}:{bound[1]}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def parse_routes(values: Sequence[str]) -> dict[str, str]:
    """``PREFIX=URL`` options as a dict; raises ValueError on a malformed one."""
    routes: dict[str, str] = {}
    for value in values:
        prefix, sep, url = value.partition("=")
        if not sep or not prefix.startswith("/") or not url:
            raise ValueError(f"--upstream must be /PREFIX=http://HOST:PORT, got {value!r}")
        routes[prefix] = url.rstrip("/")
    return routes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--upstream", action="append", default=[], help="/PREFIX=http://HOST:PORT, repeatable"
    )
    args = parser.parse_args(argv)
    try:
        routes = parse_routes(args.upstream)
        Relay(routes)
    except ValueError as exc:
        parser.error(str(exc))
    if not routes:
        parser.error("at least one --upstream is needed")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, routes))
    else:
        uvloop.run(serve(args.host, args.port, routes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
