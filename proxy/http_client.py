"""The one shared async HTTP client of a worker process (per event loop), with keep-alive.

Timeouts are explicit: connect from GATEWAY_UPSTREAM_CONNECT_TIMEOUT, read (between two chunks)
from GATEWAY_UPSTREAM_READ_TIMEOUT. The wait for Anthropic's first byte is bounded separately by
the caller, because it decides fallback. The connections are aiohttp's
(``proxy.aiohttp_transport``; GATEWAY_UPSTREAM_TRANSPORT=httpx selects httpx's own pool).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
from typing import Any

import httpx
from django.conf import settings

from proxy.aiohttp_transport import AiohttpTransport

_clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


_MAX_CONNECTIONS = 1000
_KEEPALIVE_SECONDS = 60.0
# Upstream URLs are few (a base URL and a handful of paths per provider and model): each is
# parsed once. Bounded all the same, since a model name is part of some paths.
_PARSED_URLS_MAX = 1024


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _given(value: Any) -> bool:
    """An option a caller set (httpx passes ``USE_CLIENT_DEFAULT`` for the ones left out)."""
    return value is not None and value is not httpx.USE_CLIENT_DEFAULT


class UpstreamClient(httpx.AsyncClient):
    """httpx's client with only what a proxy needs on every request.

    - **No cookie jar.** The client is shared by every user of a worker: a ``Set-Cookie`` an
      upstream sends in answer to one user (a CDN's bot-management cookie, say) must never go
      out with another user's request. httpx's client keeps and sends them; this one neither
      stores nor adds any.
    - **Requests go straight to the transport**: no auth flow, no redirects (the gateway
      follows none; ``follow_redirects=True`` takes httpx's own path), no per-request log line.
      These and the cookie handling were about a tenth of a proxied request's CPU.
    - **Each upstream URL is parsed once** (httpx parses the URL string of every request, IDNA
      and IP address checks included).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cookies=http.cookiejar.CookieJar(policy=_NoCookies()), **kwargs)
        self._timeouts = self.timeout.as_dict()
        self._parsed: dict[str, httpx.URL] = {}
        self._has_base_url = bool(str(self.base_url))

    def _url(self, url: httpx.URL | str) -> httpx.URL:
        if isinstance(url, httpx.URL):
            return url
        parsed = self._parsed.get(url)
        if parsed is None:
            if len(self._parsed) >= _PARSED_URLS_MAX:
                self._parsed.clear()
            parsed = self._parsed[url] = httpx.URL(url)
        return parsed

    def build_request(  # type: ignore[override]
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        headers: Any = None,
        extensions: dict[str, Any] | None = None,
        **others: Any,
    ) -> httpx.Request:
        if any(_given(value) for value in others.values()) or self._has_base_url:
            # Form data, files, JSON, query parameters, a timeout or a base URL: httpx's way.
            return super().build_request(
                method, url, content=content, headers=headers, extensions=extensions, **others
            )
        return httpx.Request(
            method,
            self._url(url),
            headers=self._merge_headers(headers),
            content=content,
            extensions={"timeout": self._timeouts, **(extensions or {})},
        )

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **options: Any
    ) -> httpx.Response:
        if options.get("follow_redirects") is True or _given(options.get("auth")):
            return await super().send(request, stream=stream, **options)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        response = await self._transport_for_url(request.url).handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


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
    return UpstreamClient(timeout=timeout, transport=transport, trust_env=False)


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
