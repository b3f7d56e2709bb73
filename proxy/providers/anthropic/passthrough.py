"""The Anthropic leg: forward the client's bytes, relay the answer, or report a retryable failure.

``open_anthropic`` sends a request and returns the upstream response once it may be committed
to, or a ``LegFailure`` when the request may go to the next leg: a retryable status, a connect
error or no first byte in time — always before any byte of the answer has reached the client.
``relay_anthropic`` passes the answer through to an Anthropic client: passthrough chunks are
relayed as they arrive, never re-encoded; a sniffer reads the usage from them on the way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from proxy import jsonio
from proxy.circuit import retry_at_from_headers
from proxy.context import STREAM_INTERRUPTED, ProxyContext
from proxy.headers import client_response_headers
from proxy.http_client import upstream_client
from proxy.pools.classify import context_overflow
from proxy.providers.base import LegFailure, RawReply, transport_failure
from proxy.providers.common import condemns_key, streaming_headers
from proxy.translation.errors import (
    MappedError,
    error_type_for_status,
    is_retryable_anthropic_status,
)
from proxy.translation.sse import SSEUsageSniffer, Usage, usage_from_message

logger = logging.getLogger(__name__)

PROVIDER = "anthropic"


def anthropic_error(status: int, headers: dict[str, str], content: bytes) -> MappedError:
    """Anthropic's error reply in the hub shape (it already is one, when it parses)."""
    retry: dict[str, str] = {
        name: headers[name] for name in ("retry-after", "retry-after-ms") if name in headers
    }
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type"):
        message = str(error.get("message") or "")
        clean = {"type": "error", "error": {"type": str(error["type"]), "message": message}}
        return MappedError(status=status, body=clean, headers=retry)
    text = content[:500].decode("utf-8", "replace") or "Anthropic failed."
    return MappedError(
        status=status,
        body={"type": "error", "error": {"type": error_type_for_status(status), "message": text}},
        headers=retry,
    )


@dataclass
class Opened:
    """An Anthropic response that may be committed to; a stream's first chunk is already read."""

    response: httpx.Response
    first_chunk: bytes = b""
    chunks: AsyncIterator[bytes] | None = None

    def rest(self) -> AsyncIterator[bytes]:
        """Every chunk of the body, the one already read first."""
        return _prepend(self.first_chunk, self.chunks)


async def _prepend(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    if first:
        yield first
    if rest is not None:
        async for chunk in rest:
            yield chunk


async def open_anthropic(
    *,
    path: str,
    body: bytes,
    headers: dict[str, str],
    context: ProxyContext,
    pooled: bool = False,
    context_failover: bool = False,
) -> Opened | LegFailure:
    """The upstream response, open, when it is a success or an error meant for the client.
    ``pooled``: the request carries a stored key of a pool, and an error that condemns that key
    (refused, out of credit) is a LegFailure, so that another key may answer.
    ``context_failover``: a "prompt is too long" error is a LegFailure too (a routing rule's
    next target may have a larger context window)."""
    url = settings.GATEWAY_ANTHROPIC_BASE_URL + path
    client = upstream_client()
    wait = (
        settings.GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT
        if context.stream
        else settings.GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT
    )
    # Django decoded the client's header bytes as latin-1; encoding them back gives the exact
    # bytes (httpx would encode str values as ASCII and fail on obs-text).
    raw_headers = {
        name.encode("latin-1"): value.encode("latin-1", "replace")
        for name, value in headers.items()
    }
    request = client.build_request("POST", url, headers=raw_headers, content=body)
    response: httpx.Response | None = None
    try:
        async with asyncio.timeout(wait):
            response = await client.send(request, stream=True)
            if is_retryable_anthropic_status(response.status_code):
                content = await response.aread()
                await response.aclose()
                response_headers = dict(response.headers)
                return LegFailure(
                    reason=f"anthropic_{response.status_code}",
                    raw=RawReply(response.status_code, response_headers, content),
                    error=anthropic_error(response.status_code, response_headers, content),
                    retry_at=(
                        retry_at_from_headers(response_headers, time.time())
                        if response.status_code == 429
                        else None
                    ),
                )
            if not context.stream or response.status_code != 200:
                content = await response.aread()
                await response.aclose()
                if pooled and condemns_key(response.status_code, response.headers, content):
                    response_headers = dict(response.headers)
                    return LegFailure(
                        reason=f"anthropic_{response.status_code}",
                        raw=RawReply(response.status_code, response_headers, content),
                        error=anthropic_error(response.status_code, response_headers, content),
                        upstream_failed=False,
                    )
                if context_failover and context_overflow(response.status_code, content):
                    response_headers = dict(response.headers)
                    return LegFailure(
                        reason="context_length_exceeded",
                        raw=RawReply(response.status_code, response_headers, content),
                        error=anthropic_error(response.status_code, response_headers, content),
                        upstream_failed=False,
                    )
                return Opened(response)
            # Wait for the first chunk within the same bound: a stream that opens but says
            # nothing is as dead as one that never opens.
            chunks = response.aiter_raw()
            first_chunk = await anext(chunks, b"")
    except BaseException as exc:
        if response is not None:
            await response.aclose()
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            raise
        if not isinstance(exc, Exception):
            raise
        failure = transport_failure(exc)
        logger.info(
            "anthropic: %s for %s (%s)", failure.reason, context.request_id, type(exc).__name__
        )
        return failure
    return Opened(response, first_chunk, chunks)


def relay_anthropic(opened: Opened, context: ProxyContext) -> HttpResponseBase:
    """An open Anthropic response, passed through to an Anthropic client unchanged."""
    response = opened.response
    if opened.chunks is None:
        return _complete_response(response, response.content, context)
    return _streaming_response(response, opened.chunks, opened.first_chunk, context)


def _complete_response(
    upstream: httpx.Response, content: bytes, context: ProxyContext
) -> HttpResponse:
    usage: Usage | None = None
    model = ""
    if upstream.status_code == 200:
        try:
            message = jsonio.loads(content)
            usage = usage_from_message(message)
            model = str(message.get("model") or "")
        except (ValueError, AttributeError, RecursionError):
            logger.warning("anthropic: unparseable 200 body for %s", context.request_id)
    context.mark_first_byte()
    context.tap(content)
    context.record(
        provider=PROVIDER, status=upstream.status_code, usage=usage, upstream_model=model
    )
    response = HttpResponse(content, status=upstream.status_code)
    for name, value in client_response_headers(upstream.headers.multi_items()):
        response[name] = value
    for name, value in context.gateway_headers(PROVIDER).items():
        response[name] = value
    return response


def _streaming_response(
    upstream: httpx.Response,
    chunks: AsyncIterator[bytes],
    first_chunk: bytes,
    context: ProxyContext,
) -> HttpResponseBase:
    response = StreamingHttpResponse(
        _relay(upstream, chunks, first_chunk, context), status=upstream.status_code
    )
    for name, value in client_response_headers(upstream.headers.multi_items()):
        response[name] = value
    for name, value in context.gateway_headers(PROVIDER).items():
        response[name] = value
    return streaming_headers(response)


async def _relay(
    upstream: httpx.Response,
    chunks: AsyncIterator[bytes],
    first_chunk: bytes,
    context: ProxyContext,
) -> AsyncIterator[bytes]:
    sniffer = SSEUsageSniffer()
    tap = context.response_tap
    status = upstream.status_code
    disconnected = True  # until the stream ends normally or with an upstream error
    try:
        context.mark_first_byte()
        sniffer.feed(first_chunk)
        if tap is not None:
            tap.append(first_chunk)
        yield first_chunk
        async for chunk in chunks:
            sniffer.feed(chunk)
            if tap is not None:
                tap.append(chunk)
            yield chunk
        disconnected = False
    except httpx.HTTPError as exc:
        disconnected = False
        status = 502
        logger.warning("anthropic: stream cut for %s: %s", context.request_id, exc)
        if tap is not None:
            tap.append(STREAM_INTERRUPTED)
        yield STREAM_INTERRUPTED
    finally:
        await upstream.aclose()
        sniffer.close()
        if sniffer.error is not None and status == 200:
            status = 500
        context.record(
            provider=PROVIDER,
            status=status,
            usage=sniffer.usage,
            upstream_model=sniffer.model or "",
            disconnected=disconnected,
        )
