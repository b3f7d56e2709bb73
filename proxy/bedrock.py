"""The Bedrock leg: answer an Anthropic Messages request from Bedrock, in Anthropic's format.

Two API modes, chosen per credential: InvokeModel with the Anthropic-native body (keeps thinking,
tools and caching as they are) and Converse (translated both ways). Streams arrive as AWS
eventstream frames, decoded by botocore's ``EventStreamBuffer``, and leave as Anthropic SSE.

``call_bedrock`` returns the client's response, or a ``BedrockFailure`` when Bedrock failed
before anything was sent to the client (so the caller can pick the more useful error).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

from proxy.context import STREAM_INTERRUPTED, ProxyContext, json_response
from proxy.http_client import upstream_client
from proxy.routing import BedrockTarget
from proxy.translation.converse import (
    anthropic_to_converse,
    converse_to_anthropic,
    tool_name_map,
)
from proxy.translation.converse_stream import ConverseStreamTranslator
from proxy.translation.errors import MappedError, bedrock_error_to_anthropic, error_body
from proxy.translation.invoke import (
    InvokeStreamTranslator,
    anthropic_to_invoke,
    invoke_response_to_anthropic,
)
from proxy.translation.limits import clamp_output_tokens
from proxy.translation.model_ids import quote_model_id
from proxy.translation.sse import Usage, encode_sse, normalize_usage, usage_from_message

logger = logging.getLogger(__name__)

PROVIDER = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"


@dataclass
class BedrockFailure:
    error: MappedError


class _StreamTranslator:
    """One interface over the Converse and Invoke stream translators."""

    def __init__(
        self, target: BedrockTarget, model: str, message_id: str, tool_names: dict[str, str]
    ) -> None:
        self.converse = target.api_mode == "converse"
        self._converse = ConverseStreamTranslator(
            model=model, message_id=message_id, tool_names=tool_names
        )
        self._invoke = InvokeStreamTranslator(model=model)

    def feed(self, message: EventStreamMessage) -> list[tuple[str, dict[str, Any]]]:
        event_type = message.headers.get(":event-type", "")
        payload = json.loads(message.payload) if message.payload else {}
        if self.converse:
            return self._converse.feed(event_type, payload)
        if event_type != "chunk":
            return []
        return self._invoke.feed(payload)

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        return self._converse.finish() if self.converse else []

    @property
    def usage(self) -> Usage:
        raw = self._converse.usage if self.converse else self._invoke.usage
        return raw if isinstance(raw, Usage) else normalize_usage(raw)


def _request_for(
    target: BedrockTarget, body: dict[str, Any], *, stream: bool, betas: list[str]
) -> tuple[str, dict[str, Any]]:
    model_path = f"{target.endpoint}/model/{quote_model_id(target.model_id)}"
    if target.api_mode == "converse":
        payload = anthropic_to_converse(body, model_id=target.model_id, betas=betas)
        return model_path + ("/converse-stream" if stream else "/converse"), payload
    payload = anthropic_to_invoke(body, betas=betas, model_id=target.model_id)
    return model_path + ("/invoke-with-response-stream" if stream else "/invoke"), payload


def _headers(target: BedrockTarget, *, stream: bool) -> dict[str, str]:
    return {
        "authorization": f"Bearer {target.secret}",
        "content-type": "application/json",
        "accept": EVENTSTREAM if stream else "application/json",
    }


def bedrock_http_error(status: int, headers: httpx.Headers, content: bytes) -> MappedError:
    message = ""
    exception_type = None
    try:
        data = json.loads(content)
        if isinstance(data, dict):
            message = str(data.get("message") or data.get("Message") or "")
            exception_type = data.get("__type")
    except ValueError:
        message = content[:500].decode("utf-8", "replace")
    return bedrock_error_to_anthropic(
        status=status,
        error_type_header=headers.get("x-amzn-errortype") or exception_type,
        exception_type=None,
        message=message,
    )


def _frame_error(message: EventStreamMessage) -> MappedError:
    """An exception or error frame inside an eventstream, mapped to Anthropic's error."""
    headers = message.headers
    try:
        text = str(json.loads(message.payload).get("message", ""))
    except (ValueError, AttributeError):
        text = ""
    return bedrock_error_to_anthropic(
        status=None,
        error_type_header=headers.get(":error-code"),
        exception_type=headers.get(":exception-type"),
        message=text or str(headers.get(":error-message", "")),
    )


def bedrock_transport_error(exc: Exception) -> MappedError:
    if isinstance(exc, httpx.TimeoutException):
        return MappedError(504, error_body("timeout_error", "Bedrock timed out."), {})
    return MappedError(529, error_body("overloaded_error", "Bedrock is unreachable."), {})


async def call_bedrock(
    *,
    target: BedrockTarget,
    body: dict[str, Any],
    betas: list[str],
    context: ProxyContext,
) -> HttpResponseBase | BedrockFailure:
    body = clamp_output_tokens(body, target.max_output_tokens)
    url, payload = _request_for(target, body, stream=context.stream, betas=betas)
    client = upstream_client()
    request = client.build_request(
        "POST",
        url,
        headers=_headers(target, stream=context.stream),
        content=json.dumps(payload, separators=(",", ":")).encode(),
    )
    message_id = f"msg_bdrk_{uuid.uuid4().hex[:24]}"
    # Tool names Bedrock would reject are renamed on the way in and restored on the way out.
    tool_names = tool_name_map(body) if target.api_mode == "converse" else {}
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("bedrock: %s for %s", type(exc).__name__, context.request_id)
        return BedrockFailure(bedrock_transport_error(exc))
    try:
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            return BedrockFailure(
                bedrock_http_error(response.status_code, response.headers, content)
            )
        if not context.stream:
            content = await response.aread()
            await response.aclose()
            return _complete(target, content, context, message_id, tool_names)
        return await _start_stream(target, response, context, message_id, tool_names)
    except httpx.HTTPError as exc:
        await response.aclose()
        logger.warning("bedrock: %s for %s", type(exc).__name__, context.request_id)
        return BedrockFailure(bedrock_transport_error(exc))


def _complete(
    target: BedrockTarget,
    content: bytes,
    context: ProxyContext,
    message_id: str,
    tool_names: dict[str, str],
) -> HttpResponseBase | BedrockFailure:
    try:
        data = json.loads(content)
    except ValueError:
        return BedrockFailure(
            MappedError(500, error_body("api_error", "Bedrock sent an unreadable answer."), {})
        )
    if target.api_mode == "converse":
        message = converse_to_anthropic(
            data, model=context.requested_model, message_id=message_id, tool_names=tool_names
        )
    else:
        message = invoke_response_to_anthropic(data, model=context.requested_model)
    context.mark_first_byte()
    context.record(
        provider=PROVIDER,
        status=200,
        usage=usage_from_message(message),
        upstream_model=target.model_id,
    )
    return json_response(message, headers=context.gateway_headers(PROVIDER))


async def _start_stream(
    target: BedrockTarget,
    response: httpx.Response,
    context: ProxyContext,
    message_id: str,
    tool_names: dict[str, str],
) -> HttpResponseBase | BedrockFailure:
    """Read up to the first event before committing: an exception as the very first frame
    (throttling, say) still becomes a proper HTTP error instead of a stream holding one."""
    translator = _StreamTranslator(target, context.requested_model, message_id, tool_names)
    buffer = EventStreamBuffer()
    chunks = response.aiter_raw()
    pending: list[EventStreamMessage] = []
    while not pending:
        chunk = await anext(chunks, None)
        if chunk is None:
            break
        buffer.add_data(chunk)
        try:
            pending.extend(buffer)
        except ParserError as exc:
            await response.aclose()
            logger.warning("bedrock: bad eventstream for %s: %s", context.request_id, exc)
            return BedrockFailure(
                MappedError(500, error_body("api_error", "Bedrock sent a corrupt stream."), {})
            )
    if pending and pending[0].headers.get(":message-type") != "event":
        await response.aclose()
        return BedrockFailure(_frame_error(pending[0]))
    streaming = StreamingHttpResponse(
        _relay(response, chunks, buffer, pending, translator, target, context),
        content_type="text/event-stream; charset=utf-8",
    )
    for name, value in context.gateway_headers(PROVIDER).items():
        streaming[name] = value
    streaming["cache-control"] = "no-cache"
    streaming["x-accel-buffering"] = "no"
    return streaming


async def _relay(
    response: httpx.Response,
    chunks: AsyncIterator[bytes],
    buffer: EventStreamBuffer,
    pending: list[EventStreamMessage],
    translator: _StreamTranslator,
    target: BedrockTarget,
    context: ProxyContext,
) -> AsyncIterator[bytes]:
    status = 200
    disconnected = True  # until the stream ends, normally or with an error event
    try:
        messages: list[EventStreamMessage] = pending
        while True:
            out: list[bytes] = []
            failed: MappedError | None = None
            for message in messages:
                if message.headers.get(":message-type") != "event":
                    failed = _frame_error(message)
                    break
                out.extend(encode_sse(name, data) for name, data in translator.feed(message))
            if failed is not None:
                status = failed.status
                out.append(encode_sse("error", failed.body))
                context.mark_first_byte()
                yield b"".join(out)
                disconnected = False
                return
            if out:
                context.mark_first_byte()
                yield b"".join(out)
            chunk = await anext(chunks, None)
            if chunk is None:
                break
            buffer.add_data(chunk)
            messages = list(buffer)
        tail = [encode_sse(name, data) for name, data in translator.finish()]
        if tail:
            yield b"".join(tail)
        disconnected = False
    except (httpx.HTTPError, ParserError, ValueError) as exc:
        # ValueError: a frame whose payload is not the JSON it should be (InvokeStreamError).
        disconnected = False
        status = 502
        logger.warning("bedrock: stream failed for %s: %s", context.request_id, exc)
        yield STREAM_INTERRUPTED
    finally:
        await response.aclose()
        context.record(
            provider=PROVIDER,
            status=status,
            usage=translator.usage,
            upstream_model=target.model_id,
            disconnected=disconnected,
        )
