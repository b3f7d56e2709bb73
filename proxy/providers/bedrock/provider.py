"""The Bedrock leg: answer an Anthropic Messages request from Bedrock, in Anthropic's format.

Two API modes, chosen per credential: InvokeModel with the Anthropic-native body (keeps thinking,
tools and caching as they are) and Converse (translated both ways). Streams arrive as AWS
eventstream frames, decoded by botocore's ``EventStreamBuffer``, and leave as Anthropic SSE.

Bedrock takes image bytes only, in both modes: ``bedrock_request`` fetches URL images into the
request first (``proxy.providers.media``), once per client request.

``call_bedrock`` returns the client's response (rendered in the client's format by its surface),
or a ``LegFailure`` for any failure before anything was sent to the client: Bedrock is the
fallback, and the request flow then answers with the more useful error. An image that cannot be
fetched is the exception: it raises ``TranslationError``, the client's 400, as on the Gemini and
Ollama legs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from django.http.response import HttpResponseBase

from proxy import jsonio
from proxy.context import json_response
from proxy.http_client import upstream_client
from proxy.providers.base import Call, LegFailure
from proxy.providers.common import StreamDecodeError, complete_message, translated_stream
from proxy.providers.media import call_with_inlined_images
from proxy.routing import BedrockTarget
from proxy.translation.converse import (
    anthropic_to_converse,
    converse_count_tokens_body,
    converse_to_anthropic,
    tool_name_map,
)
from proxy.translation.converse_stream import ConverseStreamTranslator
from proxy.translation.errors import MappedError, bedrock_error_to_anthropic, error_body
from proxy.translation.hub import JSON, without_foreign_thinking
from proxy.translation.invoke import (
    InvokeStreamTranslator,
    anthropic_to_invoke,
    invoke_response_to_anthropic,
)
from proxy.translation.limits import clamp_output_tokens
from proxy.translation.model_ids import quote_model_id, strip_geo_prefix
from proxy.translation.sse import Usage, normalize_usage

logger = logging.getLogger(__name__)

PROVIDER = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"


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
        payload = jsonio.loads(message.payload) if message.payload else {}
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


async def bedrock_request(target: BedrockTarget, call: Call, betas: list[str]) -> tuple[str, JSON]:
    """The URL and JSON body of the Bedrock call answering ``call`` in the target's API mode.

    Neither Converse nor InvokeModel takes an image by URL (Converse has no such source, and
    Bedrock's Anthropic body only base64), so URL images are fetched first; a request tried on
    several Bedrock legs fetches them once. Raises ``TranslationError`` when a fetch fails or is
    refused (a private address, too large, not an image).
    """
    hub = without_foreign_thinking(await call_with_inlined_images(call))
    body = clamp_output_tokens(hub, target.max_output_tokens)
    stream = call.context.stream
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
        data = jsonio.loads(content)
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
        text = str(jsonio.loads(message.payload).get("message", ""))
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


class _Frames:
    """Decoder: eventstream frames out of Bedrock's bytes (botocore checks both CRCs)."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        self._buffer.add_data(chunk)
        try:
            return list(self._buffer)
        except ParserError as exc:
            raise StreamDecodeError(f"corrupt eventstream: {exc}") from exc

    def close(self) -> list[EventStreamMessage]:
        return []


class _FrameTranslator:
    """Translator: frames to hub events; an exception or error frame becomes an error event."""

    def __init__(self, translator: _StreamTranslator) -> None:
        self._translator = translator

    def feed(self, message: EventStreamMessage) -> list[tuple[str, dict[str, Any]]]:
        if message.headers.get(":message-type") != "event":
            return [("error", _frame_error(message).body)]
        return self._translator.feed(message)

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        return self._translator.finish()

    @property
    def usage(self) -> Usage:
        return self._translator.usage


def _failure(error: MappedError) -> LegFailure:
    """Every Bedrock failure lets the next leg try: Bedrock is the fallback, and a failed
    fallback must never hide the primary's own reply."""
    return LegFailure(reason=f"bedrock_{error.status}", error=error)


async def call_bedrock(
    *, target: BedrockTarget, call: Call, betas: list[str]
) -> HttpResponseBase | LegFailure:
    context = call.context
    url, payload = await bedrock_request(target, call, betas)
    client = upstream_client()
    request = client.build_request(
        "POST",
        url,
        headers=_headers(target, stream=context.stream),
        content=jsonio.dumps(payload),
    )
    message_id = f"msg_bdrk_{uuid.uuid4().hex[:24]}"
    # Tool names Bedrock would reject are renamed on the way in and restored on the way out.
    tool_names = tool_name_map(call.hub_request()) if target.api_mode == "converse" else {}
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("bedrock: %s for %s", type(exc).__name__, context.request_id)
        return _failure(bedrock_transport_error(exc))
    try:
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            return _failure(bedrock_http_error(response.status_code, response.headers, content))
        if not context.stream:
            content = await response.aread()
            await response.aclose()
            return _complete(target, content, call, message_id, tool_names)
        translator = _StreamTranslator(target, context.requested_model, message_id, tool_names)
        outcome = await translated_stream(
            call,
            provider=PROVIDER,
            upstream_model=target.model_id,
            response=response,
            decoder=_Frames(),
            translator=_FrameTranslator(translator),
            chunks=response.aiter_raw(),
            errors_are_failures=True,
        )
        if isinstance(outcome, LegFailure) and outcome.error is None:
            return _failure(
                MappedError(529, error_body("overloaded_error", "Bedrock is unreachable."), {})
            )
        return outcome
    except httpx.HTTPError as exc:
        await response.aclose()
        logger.warning("bedrock: %s for %s", type(exc).__name__, context.request_id)
        return _failure(bedrock_transport_error(exc))


def _complete(
    target: BedrockTarget,
    content: bytes,
    call: Call,
    message_id: str,
    tool_names: dict[str, str],
) -> HttpResponseBase | LegFailure:
    try:
        data = jsonio.loads(content)
    except ValueError:
        return _failure(
            MappedError(500, error_body("api_error", "Bedrock sent an unreadable answer."), {})
        )
    model = call.context.requested_model
    if target.api_mode == "converse":
        message = converse_to_anthropic(
            data, model=model, message_id=message_id, tool_names=tool_names
        )
    else:
        message = invoke_response_to_anthropic(data, model=model)
    return complete_message(
        call, provider=PROVIDER, message=message, upstream_model=target.model_id
    )


async def bedrock_count_tokens(
    target: BedrockTarget, call: Call, betas: list[str]
) -> HttpResponseBase | LegFailure:
    # CountTokens takes the base model ID: inference-profile prefixes are rejected there.
    model_id = strip_geo_prefix(target.model_id)
    url = f"{target.endpoint}/model/{quote_model_id(model_id)}/count-tokens"
    payload = converse_count_tokens_body(call.hub_request(), betas=betas)
    try:
        response = await upstream_client().post(
            url,
            content=jsonio.dumps(payload),
            headers={
                "authorization": f"Bearer {target.secret}",
                "content-type": "application/json",
                "accept": "application/json",
            },
        )
    except Exception as exc:
        return _failure(bedrock_transport_error(exc))
    if response.status_code != 200:
        return _failure(
            bedrock_http_error(response.status_code, response.headers, response.content)
        )
    try:
        tokens = int(response.json()["inputTokens"])
    except (ValueError, KeyError, TypeError):
        return _failure(bedrock_http_error(500, response.headers, response.content))
    return json_response({"input_tokens": tokens}, headers=call.context.gateway_headers(PROVIDER))
