"""An experiment, not the product: the gateway's ASGI app with a lean path for /ak/ routes.

The profile of the gateway's worker shows most of a proxied request's CPU time going to
Django's request plumbing rather than to proxying:

- every ``MiddlewareMixin`` middleware runs ``process_request``/``process_response`` through
  ``sync_to_async``, and ``ASGIHandler`` opens a ``ThreadSensitiveContext`` per request, so each
  request starts a thread of its own and hops to it a dozen times;
- ``ASGIHandler.handle`` sends ``request_started`` (sync receivers: a thread hop) and closes the
  response with ``sync_to_async(response.close)`` (another hop, for ``request_finished``);
- the usage writer thread blocks on its queue, so every queued event wakes it (a GIL hand-off
  per request) although it writes in batches.

The proxy routes need none of the middleware (no session, CSRF, auth or messages: the key in
the path is the credential) and touch the database only through ``sync_to_async`` on a cold key
cache. This module measures the proposed fixes without touching the gateway, selected by
``BENCH_LEAN_LEVEL``:

- ``1``: ``/ak/`` requests go to an ``ASGIHandler`` without middleware and without the
  per-request thread context;
- ``2``: as 1, and the handler neither sends the request signals nor hops to a thread to close
  the response (it still watches for client disconnects, as Django's handler does);
- ``3``: as 2, and the usage writer sleeps between batches instead of waking on every event;
- ``4``: as 3, and the upstream client uses the aiohttp-backed transport of ``httpx-aiohttp``
  instead of httpcore's pool (needs the bench tools venv, which has it).

Every other path goes to the unchanged application. Run the gateway with
``uvicorn bench.proxy.lean_asgi:application`` (``proxy_bench --lean-asgi LEVEL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import time
from typing import Any

from django.core.asgi import get_asgi_application
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

LEVEL = int(os.environ.get("BENCH_LEAN_LEVEL", "1"))

full_application = get_asgi_application()


class ProxyRoutesHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and no per-request thread."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if LEVEL >= 2:
            await self._lean_handle(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def _lean_handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = self.request_class(scope, io.BytesIO(bytes(body)))

        async def respond() -> None:
            response = await self.get_response_async(request)
            await self.send_response(response, send)

        responder = asyncio.create_task(respond())
        watcher = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait([responder, watcher], return_when=asyncio.FIRST_COMPLETED)
        for task in (watcher, responder):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task


def _batched_collect(self: Any, block_seconds: float) -> tuple[list[Any], bool]:
    """The usage writer's collect step, sleeping instead of waking on each event."""
    time.sleep(block_seconds)
    batch: list[Any] = []
    while len(batch) < 500:
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


if LEVEL >= 3:
    from usage.recording import UsageWriter

    UsageWriter._collect = _batched_collect  # type: ignore[method-assign]

if LEVEL >= 4:
    import httpx
    from django.conf import settings
    from httpx_aiohttp import AiohttpTransport

    from proxy import http_client

    def _build_with_aiohttp() -> httpx.AsyncClient:
        timeout = httpx.Timeout(
            connect=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
            read=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
            write=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
            pool=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
        )
        limits = httpx.Limits(
            max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60
        )
        transport = AiohttpTransport(limits=limits, trust_env=False)
        return httpx.AsyncClient(
            timeout=timeout, limits=limits, trust_env=False, transport=transport
        )

    http_client._build = _build_with_aiohttp

proxy_application = ProxyRoutesHandler()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/ak/"):
        await proxy_application(scope, receive, send)
    else:
        await full_application(scope, receive, send)
