"""The one shared async HTTP client of a worker process (per event loop), with keep-alive.

Timeouts are explicit: connect from GATEWAY_UPSTREAM_CONNECT_TIMEOUT, read (between two chunks)
from GATEWAY_UPSTREAM_READ_TIMEOUT. The wait for Anthropic's first byte is bounded separately by
the caller, because it decides fallback. The connections are aiohttp's
(``proxy.aiohttp_transport``; GATEWAY_UPSTREAM_TRANSPORT=httpx selects httpx's own pool).
"""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

from proxy.aiohttp_transport import AiohttpTransport

_clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


_MAX_CONNECTIONS = 1000
_KEEPALIVE_SECONDS = 60.0


def _build() -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
        read=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
        write=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
        pool=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
    )
    limits = httpx.Limits(
        max_connections=_MAX_CONNECTIONS,
        max_keepalive_connections=200,
        keepalive_expiry=_KEEPALIVE_SECONDS,
    )
    # trust_env off: proxies or netrc from the environment must not silently reroute upstream
    # traffic that carries client credentials.
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
        limits=limits, trust_env=False, http2=False
    )
    if settings.GATEWAY_UPSTREAM_TRANSPORT == "aiohttp":
        transport = AiohttpTransport(
            limit=_MAX_CONNECTIONS, keepalive_seconds=_KEEPALIVE_SECONDS, fallback=transport
        )
    return httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False)


def upstream_client() -> httpx.AsyncClient:
    """The client of the running event loop (a client's pool cannot cross loops)."""
    loop = asyncio.get_running_loop()
    entry = _clients.get(id(loop))
    # The identity check guards against a finished loop's id being reused by a new one.
    if entry is None or entry[0] is not loop or entry[1].is_closed:
        entry = (loop, _build())
        _clients[id(loop)] = entry
    return entry[1]


async def close_upstream_client() -> None:
    loop = asyncio.get_running_loop()
    entry = _clients.pop(id(loop), None)
    if entry is not None and entry[0] is loop:
        await entry[1].aclose()
