"""An httpx transport over aiohttp: the upstream client's connection pool, without httpcore's.

Why: httpcore's pool scans every pooled connection, several times, for each request (its
``_assign_requests_to_connections``), which the profile of the gateway under load put at 60–80 %
of a worker's CPU (bench/results, "Where the gateway worker spends its CPU"). aiohttp's
connector hands out a keep-alive connection per host from a queue. The gateway keeps httpx's API
(requests, responses, timeouts, exceptions) everywhere else: this transport maps aiohttp's
failures onto the httpx exceptions the request flow already decides on:

| aiohttp                                   | httpx                |
|-------------------------------------------|----------------------|
| refused / unreachable / DNS failure       | ConnectError         |
| no connection within the connect timeout  | ConnectTimeout       |
| no byte within the read timeout           | ReadTimeout          |
| closed before or during the response      | RemoteProtocolError  |
| reset, broken pipe (other socket errors)  | ReadError            |
| a response that is not HTTP               | RemoteProtocolError  |

aiohttp writes header values as UTF-8; a request whose header bytes are not ASCII (obs-text a
client sent, which the gateway forwards byte for byte) goes through httpx's own transport
instead, so those bytes arrive exactly. Responses are not decompressed here: httpx decodes
``content-encoding`` itself, as with its own transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

_WRITTEN_BY_AIOHTTP = frozenset((b"host", b"content-length", b"transfer-encoding"))


def _map_error(exc: BaseException, *, started: bool) -> httpx.TransportError:
    """The httpx exception for an aiohttp failure; ``started``: response headers were read."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.SocketTimeoutError | asyncio.TimeoutError | TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed response
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return httpx.ReadError(message) if started else httpx.ConnectError(message)
    return httpx.RemoteProtocolError(message)


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp reads it: each chunk as soon as it arrives (SSE relays
    must not wait for a buffer to fill)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _map_error(exc, started=True) from exc

    async def aclose(self) -> None:
        # Read to the end: the connection goes back to the pool. Abandoned part way (a client
        # hung up): closed, so the upstream sees the request end at once.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session per transport, created in the event loop of its first request
    (``proxy.http_client`` keeps one client per loop)."""

    def __init__(
        self, *, limit: int, keepalive_seconds: float, fallback: httpx.AsyncBaseTransport
    ) -> None:
        self._limit = limit
        self._keepalive_seconds = keepalive_seconds
        self._fallback = fallback
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_seconds,
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            # httpx computed host and content-length for this request: aiohttp writes its own.
            headers = [
                (name.decode("ascii"), value.decode("ascii"))
                for name, value in request.headers.raw
                if name.lower() not in _WRITTEN_BY_AIOHTTP
            ]
        except UnicodeDecodeError:
            return await self._fallback.handle_async_request(request)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        try:
            response = await self._session_now().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
                compress=None,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _map_error(exc, started=False) from exc
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._fallback.aclose()
