"""The Anthropic leg: forward the client's bytes, relay the answer, or report a retryable failure.

``attempt_anthropic`` returns either a response to hand to the client (success, or an error
Anthropic meant for the client) or an ``AnthropicFailure`` when the request may go to Bedrock:
a retryable status, a connect error or no first byte in time — always before any byte of the
answer has reached the client. Passthrough chunks are relayed as they arrive, never re-encoded;
a sniffer reads the usage from them on the way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from proxy.circuit import retry_at_from_headers
from proxy.context import STREAM_INTERRUPTED, ProxyContext
from proxy.headers import client_response_headers
from proxy.http_client import upstream_client
from proxy.translation.errors import is_retryable_anthropic_status
from proxy.translation.sse import SSEUsageSniffer, Usage, usage_from_message

logger = logging.getLogger(__name__)

PROVIDER = "anthropic"


@dataclass
class AnthropicFailure:
    """Anthropic could not answer; ``status``/``body`` hold its own reply when there was one."""

    reason: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    retry_at: float | None = None

    def as_response(self) -> HttpResponse | None:
        """Anthropic's own reply, unchanged, or None when it never replied."""
        if self.status is None:
            return None
        response = HttpResponse(self.body, status=self.status)
        for name, value in client_response_headers(self.headers.items()):
            response[name] = value
        return response


def _failure_from_exception(exc: BaseException) -> AnthropicFailure:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        if isinstance(exc, httpx.ConnectTimeout):
            return AnthropicFailure(reason="connect_timeout")
        return AnthropicFailure(reason="first_byte_timeout")
    if isinstance(exc, httpx.ConnectError):
        return AnthropicFailure(reason="connect_error")
    return AnthropicFailure(reason="upstream_error")


async def attempt_anthropic(
    *, path: str, body: bytes, headers: dict[str, str], context: ProxyContext
) -> HttpResponseBase | AnthropicFailure:
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
                return AnthropicFailure(
                    reason=f"anthropic_{response.status_code}",
                    status=response.status_code,
                    headers=response_headers,
                    body=content,
                    retry_at=(
                        retry_at_from_headers(response_headers, time.time())
                        if response.status_code == 429
                        else None
                    ),
                )
            if not context.stream or response.status_code != 200:
                content = await response.aread()
                await response.aclose()
                return _complete_response(response, content, context)
            chunks = response.aiter_raw()
            first_chunk = await anext(chunks, b"")
    except BaseException as exc:
        if response is not None:
            await response.aclose()
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            raise
        if not isinstance(exc, Exception):
            raise
        failure = _failure_from_exception(exc)
        logger.info(
            "anthropic: %s for %s (%s)", failure.reason, context.request_id, type(exc).__name__
        )
        return failure
    return _streaming_response(response, chunks, first_chunk, context)


def _complete_response(
    upstream: httpx.Response, content: bytes, context: ProxyContext
) -> HttpResponse:
    usage: Usage | None = None
    model = ""
    if upstream.status_code == 200:
        try:
            message = json.loads(content)
            usage = usage_from_message(message)
            model = str(message.get("model") or "")
        except (ValueError, AttributeError):
            logger.warning("anthropic: unparseable 200 body for %s", context.request_id)
    context.mark_first_byte()
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
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        _relay(upstream, chunks, first_chunk, context), status=upstream.status_code
    )
    for name, value in client_response_headers(upstream.headers.multi_items()):
        response[name] = value
    for name, value in context.gateway_headers(PROVIDER).items():
        response[name] = value
    response["cache-control"] = "no-cache"
    response["x-accel-buffering"] = "no"  # nginx in front must not buffer the stream
    return response


async def _relay(
    upstream: httpx.Response,
    chunks: AsyncIterator[bytes],
    first_chunk: bytes,
    context: ProxyContext,
) -> AsyncIterator[bytes]:
    sniffer = SSEUsageSniffer()
    status = upstream.status_code
    disconnected = True  # until the stream ends normally or with an upstream error
    try:
        context.mark_first_byte()
        sniffer.feed(first_chunk)
        yield first_chunk
        async for chunk in chunks:
            sniffer.feed(chunk)
            yield chunk
        disconnected = False
    except httpx.HTTPError as exc:
        disconnected = False
        status = 502
        logger.warning("anthropic: stream cut for %s: %s", context.request_id, exc)
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
