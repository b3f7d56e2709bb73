"""The gateway's ASGI application with a lifespan: the usage writer is drained when the server
stops, before the process exits.

Why here and not in atexit alone: uvicorn, stopped by SIGTERM, finishes open requests (within
``--timeout-graceful-shutdown``), runs the lifespan shutdown, and then raises SIGTERM again with
the default handler, so the process ends without running atexit handlers. Events still queued
in usage.recording's writer (it batches every quarter second) were lost that way. The lifespan
shutdown runs after the last request ended or was cut, in every worker process.

Requests still open when the grace period ends are cut by uvicorn, which cancels their tasks.
Django's ASGI handler runs each request in an inner task that this cancellation does not reach,
so a cut stream would go on relaying, unaccounted, until the process dies. The shutdown cancels
those inner tasks first and lets them unwind (the proxy records the usage of a cut stream as it
unwinds), then drains.

``gateway_project.asgi:application`` is the gateway wrapped with ``with_usage_drain``: serve it
with ``--lifespan on`` (``manage.py run_gateway``, the Dockerfile and compose do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from usage.recording import EXIT_DRAIN_SECONDS, close_usage_writer

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Requests cut at the end of the grace period record their usage while their tasks unwind;
# they get this long on the event loop before the drain starts.
_SETTLE_SECONDS = 0.2
_UNWIND_SECONDS = 3.0
# The inner task in which Django's ASGIHandler.handle runs a request.
_DJANGO_REQUEST_TASK = "ASGIHandler.handle.<locals>.process_request"


def _orphaned_requests() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__qualname__", "") == _DJANGO_REQUEST_TASK
    ]


async def cut_open_requests(timeout: float = _UNWIND_SECONDS) -> int:
    """Cancel the requests still being processed (the server has given up on them) and wait up
    to ``timeout`` seconds for them to unwind; returns how many there were."""
    tasks = _orphaned_requests()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
        logger.warning("usage: %d requests still open at shutdown were cut", len(tasks))
    return len(tasks)


async def drain_usage_events(timeout: float = EXIT_DRAIN_SECONDS) -> None:
    """Cut the requests still open, then write (or spool) every queued usage event, within
    about ``timeout`` seconds; events recorded afterwards go straight to the spool."""
    started = time.monotonic()
    await cut_open_requests()
    await asyncio.sleep(_SETTLE_SECONDS)
    remaining = max(timeout - (time.monotonic() - started), 0.5)
    await asyncio.to_thread(close_usage_writer, remaining)
    logger.info("usage: events drained at shutdown in %.2f s", time.monotonic() - started)


def with_usage_drain(app: ASGIApp, *, timeout: float = EXIT_DRAIN_SECONDS) -> ASGIApp:
    """``app`` with an ASGI lifespan whose shutdown drains the usage writer; every other scope
    goes to ``app`` unchanged."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await drain_usage_events(timeout)
                except Exception:
                    logger.exception("usage: the drain at shutdown failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    return application
