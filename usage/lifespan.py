"""The gateway's ASGI application with a lifespan: the usage writer is drained when the server
stops, before the process exits.

Why here and not in atexit alone: uvicorn, stopped by SIGTERM, finishes open requests (within
``--timeout-graceful-shutdown``), runs the lifespan shutdown, and then raises SIGTERM again with
the default handler, so the process ends without running atexit handlers. Events still queued
in usage.recording's writer (it batches every quarter second) were lost that way. The lifespan
shutdown runs after the last request ended or was cut, in every worker process.

Serve ``usage.lifespan:application`` with ``--lifespan on`` (``manage.py run_gateway`` does);
``with_usage_drain`` wraps any ASGI application the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

# Django is set up by the gateway's own ASGI module before anything of the usage app loads.
from gateway_project.asgi import application as gateway_application
from usage.recording import EXIT_DRAIN_SECONDS, close_usage_writer

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Requests cut at the end of the grace period record their usage while their tasks unwind;
# they get this long on the event loop before the drain starts.
_SETTLE_SECONDS = 0.2


async def drain_usage_events(timeout: float = EXIT_DRAIN_SECONDS) -> None:
    """Write (or spool) every queued usage event, within about ``timeout`` seconds; events
    recorded afterwards go straight to the spool."""
    started = time.monotonic()
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


application = with_usage_drain(gateway_application)
