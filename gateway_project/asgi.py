"""ASGI entry point (`gateway_project.asgi:application`), served by uvicorn.

The proxy routes under /ak/ and /v1/ skip Django's middleware and its per-request thread
context: they use no session, CSRF, authentication or messages (the access key is the
credential), and each of those sync-capable middlewares would cost thread hops on every proxied
request.
Everything else (admin, API, health) goes through the full stack.

Neither reads a body the way Django's handler does (into a temporary file that spills to disk
past a few MB, whatever its size, before any view can refuse it): a declared size over the limit
is answered with a 413 before a byte is read, and a body is read into memory, never past the
limit and never to disk (``read_body_in_memory``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
from collections.abc import Mapping
from typing import IO, Any

import django
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.http import JsonResponse
from django.http.response import HttpResponseBase

from gateway_project.envparse import exit_on_bad_environment
from gateway_project.logfilters import CLIENT_STALLED

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
logger = logging.getLogger("proxy")

# A bad environment value ends start-up with one line naming the variable (every worker process
# imports this module on its own).
with exit_on_bad_environment():
    django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

# The largest body of a request outside the proxy. The admin's forms and the admin API's JSON
# documents are a few KB and nothing there takes a file upload, so Django's own default cap on
# a body (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MiB) leaves them ample room. The installation's
# DATA_UPLOAD_MAX_MEMORY_SIZE is raised to GATEWAY_MAX_BODY_BYTES for the proxy's sake; here
# nobody has been authenticated when the body is read, so what one request may make a worker
# hold stays small.
FULL_STACK_MAX_BODY_BYTES = 2_621_440


async def read_body_in_memory(receive: Any, limit: int) -> io.BytesIO:
    """A request body in memory, read up to ``limit`` + 1 bytes: one byte more than allowed
    tells the caller to answer 413 without the rest ever being read (the server drops what the
    client still sends)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        body += message.get("body", b"")
        if len(body) > limit:
            del body[limit + 1 :]
            break
        if not message.get("more_body", False):
            break
    return io.BytesIO(bytes(body))


def declared_too_large(scope: dict[str, Any], limit: int) -> bool:
    from proxy.gate import declared_length

    length = declared_length(scope)
    return length is not None and length > limit


def full_stack_too_large() -> JsonResponse:
    """The 413 of a request outside the proxy, in the shape of the site's other API errors."""
    from gateway_project.errors import api_error

    message = f"Request exceeds the maximum allowed size of {FULL_STACK_MAX_BODY_BYTES} bytes."
    return api_error(413, "request_too_large", message)


class FullStackHandler(ASGIHandler):
    """Django's ASGI handler, with its middleware, for everything but the proxy routes; a body
    is read into memory up to FULL_STACK_MAX_BODY_BYTES and a larger one is refused with a 413,
    before any byte is read when its size is declared."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and declared_too_large(scope, FULL_STACK_MAX_BODY_BYTES):
            await self.send_response(full_stack_too_large(), send)
            return
        await super().__call__(scope, receive, send)

    async def read_body(self, receive: Any) -> io.BytesIO:
        return await read_body_in_memory(receive, FULL_STACK_MAX_BODY_BYTES)

    def create_request(
        self, scope: Mapping[str, Any], body_file: IO[bytes]
    ) -> tuple[ASGIRequest, None] | tuple[None, HttpResponseBase]:
        # A body cut at the limit reaches no view (which would see it truncated); Django's
        # handler sends this answer and reads nothing more.
        if body_file.seek(0, io.SEEK_END) > FULL_STACK_MAX_BODY_BYTES:
            return None, full_stack_too_large()
        body_file.seek(0)
        return super().create_request(scope, body_file)


full_application = FullStackHandler()


class ClientStalled(Exception):
    """A client did not take a response chunk within GATEWAY_CLIENT_WRITE_TIMEOUT."""


class ProxyRoutesHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and no per-request thread, that
    refuses what it can from the request head before reading a body (``proxy.gate``) and reads
    a body into memory, never past GATEWAY_MAX_BODY_BYTES + 1 bytes and never to disk."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from proxy.gate import early_refusal

        refusal = await early_refusal(scope)
        if refusal is not None:
            await self.send_response(refusal, send)
            return
        # Django's handler wraps this in a ThreadSensitiveContext, which gives each request a
        # thread of its own; the proxy's few database calls do not need one.
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle`` for the proxy, without its two thread hops.

        Django sends ``request_started`` through ``asend`` (its receivers are synchronous, so
        each request hops to a worker thread) and closes the response with ``sync_to_async``
        (a second hop). Under load those hops were a tenth of a worker's CPU (bench/results).
        The proxy's views use no database connection on the event loop's thread (key lookups
        run on threads of their own and close their connections), so nothing needs the signal;
        the response is closed in place, which sends ``request_finished`` as usual. Everything
        else is Django's: the request object, routing through ninja, the client-disconnect
        listener. If the server cancels this task (the end of a graceful shutdown), the inner
        request task is cancelled too, so a cut stream unwinds and records its usage.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request() -> HttpResponseBase:
            response: HttpResponseBase = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left mid-send
                await self.send_response(response, send)
            return response

        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        try:
            await asyncio.wait((listener, processing), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            listener.cancel()
            processing.cancel()
            await asyncio.gather(listener, processing, return_exceptions=True)
            raise
        for task in (listener, processing):
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()  # the view sees the cancellation and closes its upstream
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not processing.cancelled() and processing.exception() is None:
            response = processing.result()
            if getattr(response, "client_stalled", False):
                # Said in the warning above: the server's ERROR line about the unfinished
                # response, logged in this task once we return, is left out.
                CLIENT_STALLED.set(True)
            response.close()
        body_file.close()

    async def read_body(self, receive: Any) -> io.BytesIO:
        """The body in memory, up to GATEWAY_MAX_BODY_BYTES + 1 bytes: the view answers a
        larger one with a 413 (Django raises RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE,
        which is the same limit)."""
        return await read_body_in_memory(receive, settings.GATEWAY_MAX_BODY_BYTES)

    async def send_response(self, response: Any, send: Any) -> None:
        """Django's, with a bound on how long one write may wait for a client that stopped
        reading (GATEWAY_CLIENT_WRITE_TIMEOUT). The server's flow control already stops the
        relay while the client's buffers are full, so memory per stream stays bounded; this
        closes such a stream for good: the relay is closed, which closes its upstream request
        and records the partial usage, and the server drops the connection."""
        timeout = settings.GATEWAY_CLIENT_WRITE_TIMEOUT

        async def bounded_send(message: Mapping[str, Any]) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await send(message)
            except TimeoutError:
                raise ClientStalled from None

        try:
            await super().send_response(response, bounded_send)
        except ClientStalled:
            logger.warning("client read nothing for %.0f s: stream closed", timeout)
            response.client_stalled = True  # for handle(), in the server's task

    async def listen_for_disconnect(self, receive: Any) -> None:
        """Django's, except that what is left of a body past the limit is dropped (Django
        expects nothing but a disconnect once the body was read)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()


proxy_application = ProxyRoutesHandler()
# The key-holding clients' paths: /ak/<key>/... and the OpenAI-compatible /v1/...
PROXY_PREFIXES = ("/ak/", "/v1/")


async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(PROXY_PREFIXES):
        await proxy_application(scope, receive, send)
    else:
        await full_application(scope, receive, send)


# The served application: with a lifespan whose shutdown drains the usage writer before the
# process exits (serve it with --lifespan on). Imported here, once Django is set up.
from usage.lifespan import with_usage_drain  # noqa: E402

application = with_usage_drain(route)

# What start-up built (Django, the apps, their modules and tables: a few hundred thousand
# objects) lives as long as the process. Frozen, the collector's passes no longer walk it
# again and again under load: 18% less CPU per proxied request (README.md, Benchmarks).
gc.collect()
gc.freeze()
