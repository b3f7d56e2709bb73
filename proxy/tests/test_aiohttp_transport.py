"""The aiohttp transport under the upstream client (as in production): the failures the request
flow decides on come out as the httpx exceptions it expects, and header bytes aiohttp cannot
write exactly take httpx's path."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from proxy.aiohttp_transport import AiohttpTransport
from proxy.http_client import UpstreamClient


def _client(
    fallback: httpx.AsyncBaseTransport | None = None, **timeouts: float
) -> httpx.AsyncClient:
    transport = AiohttpTransport(
        limit=10,
        keepalive_seconds=5,
        fallback=fallback or httpx.AsyncHTTPTransport(),
    )
    return UpstreamClient(transport=transport, timeout=httpx.Timeout(5.0, **timeouts))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _serve(handler: object) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{_closed_port()}/")


async def test_silence_after_the_request_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    server, url = await _serve(silent)
    async with server, _client(read=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_a_connection_dropped_before_or_during_the_answer() -> None:
    async def drop_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def drop_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server, url = await _serve(drop_at_once)
    async with server, _client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
    server, url = await _serve(drop_mid_body)
    async with server, _client() as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()


async def test_chunks_arrive_as_they_are_sent_with_exact_headers() -> None:
    seen: list[bytes] = []

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n")
        for part in (b"first", b"second"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _serve(stream)
    async with (
        server,
        _client() as client,
        client.stream("POST", url, content=b"{}", headers={"x-api-key": "k1"}) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert chunks == [b"first", b"second"]
    assert response.headers["x-up"] == "1"
    head = seen[0].lower()
    assert b"x-api-key: k1\r\n" in head
    assert b"content-length: 2\r\n" in head


async def test_non_ascii_header_bytes_take_httpx_own_transport() -> None:
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=b"ok")

    async with _client(fallback=httpx.MockTransport(record)) as client:
        response = await client.get(
            f"http://127.0.0.1:{_closed_port()}/", headers={b"x-note": "caf\xe9".encode("latin-1")}
        )
    assert response.status_code == 200
    assert calls[0].headers.raw[-1] == (b"x-note", b"caf\xe9")
