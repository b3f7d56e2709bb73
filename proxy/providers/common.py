"""What the providers share: sending a request, answering a complete message, relaying a
translated stream, and turning upstream errors into leg failures or client errors.

A translated stream is three parts: a *decoder* that cuts the upstream's bytes into items (SSE
data objects, NDJSON lines, eventstream frames), a *translator* that turns items into hub events
(``proxy.translation``), and the client surface's *renderer* that writes hub events in the
client's format. ``translated_stream`` reads up to the first hub event before it commits, so an
error as the very first thing upstream says is still a leg failure (the next leg may answer)
rather than a stream holding only an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import httpx
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from proxy import jsonio
from proxy.context import json_response
from proxy.http_client import upstream_client
from proxy.pools.classify import CREDENTIAL_STATUSES, classify
from proxy.providers.base import (
    Call,
    LegFailure,
    RawReply,
    gateway_error,
    retry_at_now_plus,
    transport_failure,
)
from proxy.translation.errors import (
    MappedError,
    error_body,
    is_retryable_anthropic_status,
)
from proxy.translation.hub import HubEvent, HubUsage
from proxy.translation.sse import Usage, usage_from_message

logger = logging.getLogger(__name__)

INTERRUPTED = error_body("api_error", "The upstream stream was interrupted.")

# Anthropic error type → the status a stream's error event stands for (for the usage record).
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class StreamDecodeError(ValueError):
    """The upstream's stream bytes are not what its format allows."""


class Decoder(Protocol):
    def feed(self, chunk: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


class Translator(Protocol):
    def feed(self, item: Any) -> list[HubEvent]: ...

    def finish(self) -> list[HubEvent]: ...


def status_for_error_event(data: dict[str, Any]) -> int:
    error = data.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    return _STATUS_BY_TYPE.get(str(error_type), 500)


def is_retryable_status(status: int) -> bool:
    """Statuses after which the next leg is tried (rate limits, overload, server errors)."""
    return is_retryable_anthropic_status(status)


def streaming_headers(response: HttpResponseBase) -> HttpResponseBase:
    response["cache-control"] = "no-cache"
    response["x-accel-buffering"] = "no"  # nginx in front must not buffer the stream
    return response


def complete_message(
    call: Call,
    *,
    provider: str,
    message: dict[str, Any],
    upstream_model: str,
    reasoning_tokens: int = 0,
) -> HttpResponse:
    """A complete hub message as the client's answer, with its one usage event."""
    context = call.context
    context.mark_first_byte()
    body = call.surface.message_body(message, model=context.requested_model)
    response = json_response(body, headers=context.gateway_headers(provider))
    context.tap(response.content)
    context.record(
        provider=provider,
        status=200,
        usage=usage_from_message(message),
        upstream_model=upstream_model,
        reasoning_tokens=reasoning_tokens,
    )
    return response


def client_error(call: Call, *, provider: str, error: MappedError) -> HttpResponse:
    """An upstream error the next leg cannot fix, in the client's format."""
    context = call.context
    context.mark_first_byte()
    response = call.surface.mapped_error_response(error)
    for name, value in context.gateway_headers(provider).items():
        response[name] = value
    context.tap(response.content)
    context.record(provider=provider, status=error.status)
    return response


def failure_or_error(
    call: Call,
    *,
    provider: str,
    status: int,
    headers: httpx.Headers,
    content: bytes,
    error: MappedError,
) -> HttpResponse | LegFailure:
    """A non-200 upstream answer: a leg failure when it is retryable (or, for a pooled key,
    when it condemns the key), else the client's error."""
    if is_retryable_status(status):
        return LegFailure(
            reason=f"{provider}_{status}",
            error=error,
            raw=RawReply(status, dict(headers), content),
            retry_at=retry_at_now_plus(headers) if status == 429 else None,
        )
    if call.pooled and condemns_key(status, headers, content):
        return LegFailure(
            reason=f"{provider}_{status}",
            error=error,
            raw=RawReply(status, dict(headers), content),
            upstream_failed=False,
        )
    if call.overflow_moves_on(status, content):
        return LegFailure(
            reason="context_length_exceeded",
            error=error,
            raw=RawReply(status, dict(headers), content),
            upstream_failed=False,
        )
    return client_error(call, provider=provider, error=error)


def condemns_key(
    status: int, headers: Mapping[str, str], content: bytes | Mapping[str, Any]
) -> bool:
    """Whether a non-retryable error says the key itself is refused or out of quota."""
    if status not in CREDENTIAL_STATUSES:
        return False
    lowered = {name.lower(): value for name, value in headers.items()}
    return classify(status, lowered, content, now=time.time()).disables


def retry_after_headers(headers: httpx.Headers) -> dict[str, str]:
    """The upstream's retry hints, kept on errors the gateway rewrites into another format."""
    return {name: headers[name] for name in ("retry-after", "retry-after-ms") if name in headers}


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    first_byte_timeout: float | None,
) -> httpx.Response:
    """Send with a bound on the wait for the response head (None: the client's timeouts)."""
    if first_byte_timeout is None:
        return await client.send(request, stream=True)
    async with asyncio.timeout(first_byte_timeout):
        return await client.send(request, stream=True)


async def read_json(response: httpx.Response) -> tuple[bytes, Any]:
    """The whole body and its JSON (None when it is not JSON)."""
    content = await response.aread()
    await response.aclose()
    try:
        return content, jsonio.loads(content)
    except (ValueError, RecursionError):
        return content, None


async def translated_stream(
    call: Call,
    *,
    provider: str,
    upstream_model: str,
    response: httpx.Response,
    decoder: Decoder,
    translator: Translator,
    chunks: AsyncIterator[bytes] | None = None,
    errors_are_failures: bool = False,
) -> HttpResponseBase | LegFailure:
    """Relay an upstream stream to the client through the hub, or fail before committing.

    An error before the first event is a leg failure when it is retryable (or always, with
    ``errors_are_failures``), else the client's error."""
    chunks = chunks if chunks is not None else response.aiter_bytes()
    pending: list[HubEvent] = []
    ended = False
    try:
        while not pending and not ended:
            chunk = await anext(chunks, None)
            if chunk is None:
                ended = True
                items = decoder.close()
            else:
                items = decoder.feed(chunk)
            for item in items:
                pending.extend(translator.feed(item))
    except (httpx.HTTPError, ValueError) as exc:
        await response.aclose()
        logger.warning(
            "%s: stream failed before it started for %s: %s", provider, call.context.request_id, exc
        )
        if isinstance(exc, httpx.HTTPError):
            return LegFailure(reason="upstream_error")
        return LegFailure(
            reason=f"{provider}_bad_stream",
            error=gateway_error(500, "api_error", f"{provider} sent a corrupt stream."),
        )
    if pending and pending[0][0] == "error":
        await response.aclose()
        data = pending[0][1]
        status = status_for_error_event(data)
        mapped = MappedError(status=status, body=data, headers={})
        if errors_are_failures or is_retryable_status(status):
            return LegFailure(reason=f"{provider}_{status}", error=mapped)
        if call.pooled and condemns_key(status, {}, data):
            return LegFailure(reason=f"{provider}_{status}", error=mapped, upstream_failed=False)
        return client_error(call, provider=provider, error=mapped)
    renderer = call.surface.stream_renderer(
        model=call.context.requested_model, include_usage=call.surface.include_usage(call.data)
    )
    relay = _relay(
        call,
        provider=provider,
        upstream_model=upstream_model,
        response=response,
        chunks=chunks,
        decoder=decoder,
        translator=translator,
        renderer=renderer,
        pending=pending,
        ended=ended,
    )
    streaming = StreamingHttpResponse(relay, content_type="text/event-stream; charset=utf-8")
    for name, value in call.context.gateway_headers(provider).items():
        streaming[name] = value
    return streaming_headers(streaming)


async def _relay(
    call: Call,
    *,
    provider: str,
    upstream_model: str,
    response: httpx.Response,
    chunks: AsyncIterator[bytes],
    decoder: Decoder,
    translator: Translator,
    renderer: Any,
    pending: list[HubEvent],
    ended: bool,
) -> AsyncIterator[bytes]:
    context = call.context
    tap = context.response_tap
    usage = HubUsage()
    status = 200
    disconnected = True  # until the stream ends, normally or with an error event
    try:
        events = pending
        while True:
            errored = False
            for name, data in events:
                usage.feed(name, data)
                if name == "error":
                    status = status_for_error_event(data)
                    errored = True
            out = renderer.events(events)
            if out:
                context.mark_first_byte()
                if tap is not None:
                    tap.append(out)
                yield out
            if errored:
                disconnected = False
                return
            if ended:
                break
            chunk = await anext(chunks, None)
            if chunk is None:
                events = [event for item in decoder.close() for event in translator.feed(item)]
                ended = True
                continue
            events = [event for item in decoder.feed(chunk) for event in translator.feed(item)]
        tail = translator.finish()
        for name, data in tail:
            usage.feed(name, data)
        out = renderer.events(tail) + renderer.end()
        if out:
            context.mark_first_byte()
            if tap is not None:
                tap.append(out)
            yield out
        disconnected = False
    except (httpx.HTTPError, ValueError) as exc:
        disconnected = False
        status = 502
        logger.warning("%s: stream failed for %s: %s", provider, context.request_id, exc)
        interrupted = renderer.events([("error", INTERRUPTED)])
        if tap is not None:
            tap.append(interrupted)
        yield interrupted
    finally:
        await response.aclose()
        translator_usage = getattr(translator, "usage", None)
        final_usage = translator_usage if isinstance(translator_usage, Usage) else usage.usage
        context.record(
            provider=provider,
            status=status,
            usage=final_usage,
            upstream_model=upstream_model,
            disconnected=disconnected,
            reasoning_tokens=getattr(translator, "reasoning_tokens", 0),
        )


class SSEDataDecoder:
    """``data:`` payloads of an SSE stream, each parsed as JSON (OpenAI, Gemini).

    ``[DONE]`` and comments are skipped; a payload that is not JSON raises StreamDecodeError.
    Pending bytes are bounded: a line longer than ``max_line_bytes`` is a corrupt stream.
    """

    def __init__(self, *, max_line_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_line_bytes
        self.done = False

    def feed(self, chunk: bytes) -> list[Any]:
        self._buffer += chunk
        items: list[Any] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline == -1:
                break
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            self._line(line, items)
        if len(self._buffer) > self._max:
            raise StreamDecodeError("an SSE line exceeds the size limit")
        return items

    def _line(self, line: bytes, items: list[Any]) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if not payload:
            return
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            items.append(jsonio.loads(payload))
        except (ValueError, RecursionError) as exc:
            raise StreamDecodeError(f"an SSE data line is not JSON: {exc}") from exc

    def close(self) -> list[Any]:
        items: list[Any] = []
        if self._buffer.strip():
            self._line(self._buffer.strip(), items)
        self._buffer = b""
        return items


class NDJSONDecoder:
    """One JSON object per line (Ollama)."""

    def __init__(self, *, max_line_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_line_bytes

    def _parse(self, line: bytes) -> Any:
        try:
            return jsonio.loads(line)
        except (ValueError, RecursionError) as exc:
            raise StreamDecodeError(f"an NDJSON line is not JSON: {exc}") from exc

    def feed(self, chunk: bytes) -> list[Any]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self._max:
            raise StreamDecodeError("an NDJSON line exceeds the size limit")
        return [self._parse(line) for line in lines if line.strip()]

    def close(self) -> list[Any]:
        rest, self._buffer = self._buffer, b""
        return [self._parse(rest)] if rest.strip() else []


class SSEEventDecoder:
    """Anthropic SSE: ``(event name, data)`` pairs, for a translated Anthropic upstream."""

    def __init__(self) -> None:
        self._data = SSEDataDecoder()

    def feed(self, chunk: bytes) -> list[Any]:
        return [
            (str(item.get("type", "")), item)
            for item in self._data.feed(chunk)
            if isinstance(item, dict)
        ]

    def close(self) -> list[Any]:
        return [
            (str(item.get("type", "")), item)
            for item in self._data.close()
            if isinstance(item, dict)
        ]


class PassEvents:
    """A translator for an upstream that already speaks the hub (Anthropic): events pass as
    they are, except that the client is not told about ``ping``s it cannot use."""

    def feed(self, item: Any) -> list[HubEvent]:
        name, data = item
        return [] if name == "ping" else [(name, data)]

    def finish(self) -> list[HubEvent]:
        return []


ErrorMapper = Callable[[int, Any], tuple[int, dict[str, Any]]]


def dumps(payload: Any) -> bytes:
    return jsonio.dumps(payload)


def first_byte_timeout(call: Call) -> float | None:
    """How long a leg may take to start answering before the next leg is tried: bounded only
    when there is a next leg (a lone Ollama loading a model may take a minute, and waiting is
    then the best answer there is)."""
    if not call.has_next_leg:
        return None
    if call.stream:
        return settings.GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT
    return settings.GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT


async def open_upstream(
    call: Call, *, provider: str, method: str, url: str, headers: dict[str, str], content: bytes
) -> httpx.Response | LegFailure:
    client = upstream_client()
    request = client.build_request(method, url, headers=headers, content=content)
    try:
        return await send(client, request, first_byte_timeout=first_byte_timeout(call))
    except (httpx.HTTPError, TimeoutError) as exc:
        failure = transport_failure(exc)
        logger.info(
            "%s: %s for %s (%s)",
            provider,
            failure.reason,
            call.context.request_id,
            type(exc).__name__,
        )
        return failure


async def upstream_error(
    call: Call,
    response: httpx.Response,
    *,
    provider: str,
    map_error: ErrorMapper,
    extra_headers: Callable[[Any], dict[str, str]] | None = None,
) -> HttpResponse | LegFailure:
    """A non-200 answer: a retryable leg failure, or the client's error in its format."""
    try:
        content, parsed = await read_json(response)
    except httpx.HTTPError as exc:
        return transport_failure(exc)
    status, body = map_error(response.status_code, parsed)
    headers = retry_after_headers(response.headers)
    if extra_headers is not None:
        headers = {**extra_headers(parsed), **headers}
    error = MappedError(status=status, body=body, headers=headers)
    return failure_or_error(
        call,
        provider=provider,
        status=response.status_code,
        headers=response.headers,
        content=content,
        error=error,
    )


async def translated_generate(
    call: Call,
    *,
    provider: str,
    upstream_model: str,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    map_error: ErrorMapper,
    to_message: Callable[[dict[str, Any]], dict[str, Any]],
    decoder: Callable[[], Decoder],
    translator: Callable[[], Translator],
    extra_error_headers: Callable[[Any], dict[str, str]] | None = None,
    reasoning_of: Callable[[dict[str, Any]], int] | None = None,
) -> HttpResponseBase | LegFailure:
    """One translated leg: send the upstream request, answer through the hub.
    ``reasoning_of`` reads the reasoning tokens out of a complete upstream answer."""
    response = await open_upstream(
        call, provider=provider, method="POST", url=url, headers=headers, content=dumps(payload)
    )
    if isinstance(response, LegFailure):
        return response
    if response.status_code != 200:
        return await upstream_error(
            call,
            response,
            provider=provider,
            map_error=map_error,
            extra_headers=extra_error_headers,
        )
    if not call.stream:
        try:
            _, parsed = await read_json(response)
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        try:
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
            message = to_message(parsed)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "%s: unreadable answer for %s: %s", provider, call.context.request_id, exc
            )
            return LegFailure(
                reason=f"{provider}_bad_answer",
                error=gateway_error(500, "api_error", f"{provider} sent an unreadable answer."),
            )
        return complete_message(
            call,
            provider=provider,
            message=message,
            upstream_model=upstream_model,
            reasoning_tokens=reasoning_of(parsed) if reasoning_of is not None else 0,
        )
    return await translated_stream(
        call,
        provider=provider,
        upstream_model=upstream_model,
        response=response,
        decoder=decoder(),
        translator=translator(),
    )


async def translated_embed(
    call: Call,
    *,
    provider: str,
    upstream_model: str,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    map_error: ErrorMapper,
    to_openai: Callable[[dict[str, Any]], dict[str, Any]],
) -> HttpResponseBase | LegFailure:
    """One translated embeddings leg: the answer in OpenAI's shape, with its usage event."""
    response = await open_upstream(
        call, provider=provider, method="POST", url=url, headers=headers, content=dumps(payload)
    )
    if isinstance(response, LegFailure):
        return response
    if response.status_code != 200:
        return await upstream_error(call, response, provider=provider, map_error=map_error)
    try:
        _, parsed = await read_json(response)
        if not isinstance(parsed, dict):
            raise ValueError("not a JSON object")
        body = to_openai(parsed)
    except httpx.HTTPError as exc:
        return transport_failure(exc)
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning(
            "%s: unreadable embeddings for %s: %s", provider, call.context.request_id, exc
        )
        return LegFailure(
            reason=f"{provider}_bad_answer",
            error=gateway_error(500, "api_error", f"{provider} sent unreadable embeddings."),
        )
    context = call.context
    usage = body.get("usage")
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else 0
    context.mark_first_byte()
    answer = json_response(body, headers=context.gateway_headers(provider))
    context.tap(answer.content)
    context.record(
        provider=provider,
        status=200,
        usage=Usage(input_tokens=int(prompt_tokens or 0)),
        upstream_model=upstream_model,
    )
    return answer
