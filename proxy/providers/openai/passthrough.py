"""OpenAI-format bytes passed through to an OpenAI client, with the usage read on the way.

The gateway always asks an OpenAI-compatible upstream for usage in streams
(``stream_options.include_usage``): without it a streamed request could not be accounted. When
the client did not ask for it, the one usage-only chunk (``"choices": []``) is left out of what
the client gets, so the client sees exactly what it asked for. Everything else is relayed as the
upstream sent it; only events that mention usage are parsed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from proxy import jsonio
from proxy.headers import client_response_headers
from proxy.providers.base import Call
from proxy.providers.common import INTERRUPTED, streaming_headers
from proxy.translation.hub import JSON
from proxy.translation.openai_common import reasoning_tokens_from_openai, usage_from_openai
from proxy.translation.openai_errors import anthropic_error_to_openai
from proxy.translation.sse import Usage, normalize_usage

logger = logging.getLogger(__name__)

# A chunk with usage has an object there; every other chunk of a stream that asked for usage
# says "usage":null, and is not parsed.
_USAGE_MARKERS = (b'"usage":{', b'"usage": {')
_MAX_PENDING = 16 * 1024 * 1024


def usage_of(data: Any) -> Usage | None:
    """Anthropic-style usage out of an OpenAI body or chunk (None when it has none)."""
    if not isinstance(data, dict) or not isinstance(data.get("usage"), dict):
        return None
    return normalize_usage(usage_from_openai(data["usage"]))


def reasoning_of(data: Any) -> int:
    """The reasoning part of an OpenAI answer's output tokens (0 when not reported)."""
    return reasoning_tokens_from_openai(data.get("usage")) if isinstance(data, dict) else 0


def stream_body(call: Call, model: str) -> tuple[bytes, bool]:
    """The bytes to send upstream, and whether the client asked for the usage chunk itself."""
    data = call.data
    client_wants_usage = call.surface.include_usage(data)
    changes: JSON = {}
    if data.get("model") != model:
        changes["model"] = model
    if call.stream and not client_wants_usage:
        options = data.get("stream_options")
        changes["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    if not changes:
        return call.body, client_wants_usage
    return jsonio.dumps({**data, **changes}), client_wants_usage


def complete(call: Call, response: httpx.Response, *, provider: str, model: str) -> HttpResponse:
    """A complete answer (or an error the client should see), passed through unchanged."""
    context = call.context
    content = response.content
    usage: Usage | None = None
    reasoning = 0
    upstream_model = model
    if response.status_code == 200:
        try:
            data = jsonio.loads(content)
            usage = usage_of(data)
            reasoning = reasoning_of(data)
            upstream_model = str(data.get("model") or model)
        except (ValueError, AttributeError, RecursionError):
            logger.warning("%s: unparseable 200 body for %s", provider, context.request_id)
    context.mark_first_byte()
    context.tap(content)
    context.record(
        provider=provider,
        status=response.status_code,
        usage=usage,
        upstream_model=upstream_model,
        reasoning_tokens=reasoning,
    )
    passthrough = HttpResponse(content, status=response.status_code)
    for name, value in client_response_headers(response.headers.multi_items()):
        passthrough[name] = value
    for name, value in context.gateway_headers(provider).items():
        passthrough[name] = value
    return passthrough


def streaming(
    call: Call, response: httpx.Response, *, provider: str, model: str, client_wants_usage: bool
) -> HttpResponseBase:
    relay = _relay(
        call, response, provider=provider, model=model, client_wants_usage=client_wants_usage
    )
    passthrough = StreamingHttpResponse(relay, status=response.status_code)
    for name, value in client_response_headers(response.headers.multi_items()):
        passthrough[name] = value
    for name, value in call.context.gateway_headers(provider).items():
        passthrough[name] = value
    return streaming_headers(passthrough)


class _Events:
    """Cuts SSE bytes into whole events (``\\n\\n``-terminated), keeping each event's bytes."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._pending + chunk
        end = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
        if end == -1:
            self._pending = data
            if len(data) > _MAX_PENDING:
                raise ValueError("an SSE event exceeds the size limit")
            return []
        cut = end + (4 if data.startswith(b"\r\n\r\n", end) else 2)
        self._pending = data[cut:]
        return [data[:cut]]

    def close(self) -> list[bytes]:
        rest, self._pending = self._pending, b""
        return [rest] if rest else []


def _inspect(block: bytes, *, client_wants_usage: bool) -> tuple[bytes, Usage | None, int]:
    """The bytes to relay of a block of whole events, the usage one of them carried and the
    reasoning part of its output."""
    if not any(marker in block for marker in _USAGE_MARKERS):
        return block, None, 0
    usage: Usage | None = None
    reasoning = 0
    kept: list[bytes] = []
    for event in block.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not event.strip():
            continue
        payload = event.split(b"data:", 1)[1].strip() if b"data:" in event else b""
        if any(marker in payload for marker in _USAGE_MARKERS):
            try:
                data = jsonio.loads(payload)
            except (ValueError, RecursionError):
                data = None
            found = usage_of(data)
            if found is not None:
                usage = found
                reasoning = reasoning_of(data)
                if not client_wants_usage and isinstance(data, dict) and data.get("choices") == []:
                    continue
        kept.append(event + b"\n\n")
    # Re-framed only when a chunk was left out; otherwise the upstream's bytes, as they came.
    return (block if client_wants_usage else b"".join(kept)), usage, reasoning


async def _relay(
    call: Call, response: httpx.Response, *, provider: str, model: str, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    context = call.context
    tap = context.response_tap
    events = _Events()
    usage: Usage | None = None
    reasoning = 0
    status = response.status_code
    disconnected = True
    try:
        async for chunk in response.aiter_raw():
            for block in events.feed(chunk):
                out, found, found_reasoning = _inspect(block, client_wants_usage=client_wants_usage)
                usage = found or usage
                reasoning = found_reasoning or reasoning
                if out:
                    context.mark_first_byte()
                    if tap is not None:
                        tap.append(out)
                    yield out
        for block in events.close():
            out, found, found_reasoning = _inspect(block, client_wants_usage=client_wants_usage)
            usage = found or usage
            reasoning = found_reasoning or reasoning
            if out:
                if tap is not None:
                    tap.append(out)
                yield out
        disconnected = False
    except (httpx.HTTPError, ValueError) as exc:
        disconnected = False
        status = 502
        logger.warning("%s: stream cut for %s: %s", provider, context.request_id, exc)
        error = anthropic_error_to_openai(502, INTERRUPTED)
        yield b"data: " + jsonio.dumps(error) + b"\n\n"
    finally:
        await response.aclose()
        context.record(
            provider=provider,
            status=status,
            usage=usage,
            upstream_model=model,
            disconnected=disconnected,
            reasoning_tokens=reasoning,
        )
