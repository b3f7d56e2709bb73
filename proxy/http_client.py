"""The one shared async HTTP client of a worker process (per event loop), with keep-alive.

Timeouts are explicit: connect from GATEWAY_UPSTREAM_CONNECT_TIMEOUT, read (between two chunks)
from GATEWAY_UPSTREAM_READ_TIMEOUT. The wait for Anthropic's first byte is bounded separately by
the caller, because it decides fallback.
"""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

_clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


def _build() -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
        read=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
        write=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
        pool=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
    )
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60)
    # trust_env off: proxies or netrc from the environment must not silently reroute upstream
    # traffic that carries client credentials.
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False, http2=False)


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
