"""Client surfaces: the formats clients speak, and how hub answers are rendered in them.

A surface knows one client format: how its request becomes a hub (Anthropic Messages) request,
how a hub message, a hub stream and an error are written back in it. Providers call these to
answer a client whose format differs from their upstream's; a provider whose upstream speaks the
surface's own ``wire`` passes bytes through instead.

- ``AnthropicMessages``: ``/v1/messages`` and ``count_tokens`` (the hub format itself).
- ``OpenAIChat``: ``/v1/chat/completions``.
- ``OpenAICompletions``: the legacy ``/v1/completions``.
- ``OpenAIEmbeddings`` and ``OpenAIModels``: no hub form; errors only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponse

from proxy import jsonio
from proxy.context import json_response
from proxy.translation.errors import MappedError, error_body
from proxy.translation.hub import JSON, HubEvent
from proxy.translation.openai_chat import anthropic_message_to_chat, chat_request_to_anthropic
from proxy.translation.openai_completions import (
    AnthropicToCompletionChunks,
    anthropic_message_to_completion,
    completion_request_to_anthropic,
)
from proxy.translation.openai_errors import anthropic_error_to_openai, openai_status_for_anthropic
from proxy.translation.openai_stream import AnthropicToChatChunks
from proxy.translation.sse import encode_sse

ANTHROPIC = "anthropic"
OPENAI = "openai"


def _data_line(chunk: JSON) -> bytes:
    return b"data: " + jsonio.dumps(chunk) + b"\n\n"


class StreamRenderer:
    """Writes hub events in a client format; ``end`` is called once after the last event."""

    def events(self, events: list[HubEvent]) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        return b""


class AnthropicStreamRenderer(StreamRenderer):
    def events(self, events: list[HubEvent]) -> bytes:
        return b"".join(encode_sse(name, data) for name, data in events)


class OpenAIStreamRenderer(StreamRenderer):
    """OpenAI ``data:`` lines from hub events; ``[DONE]`` at the end unless an error ended it."""

    def __init__(self, translator: Any) -> None:
        self._translator = translator
        self._errored = False

    def _lines(self, chunks: list[JSON]) -> bytes:
        out = []
        for chunk in chunks:
            if self._errored:
                break
            out.append(_data_line(chunk))
            if "error" in chunk:
                self._errored = True
        return b"".join(out)

    def events(self, events: list[HubEvent]) -> bytes:
        out = []
        for name, data in events:
            if self._errored:
                break
            out.append(self._lines(self._translator.feed(name, data)))
        return b"".join(out)

    def end(self) -> bytes:
        if self._errored:
            return b""
        return self._lines(self._translator.finish()) + b"data: [DONE]\n\n"


class Surface:
    """One client format. ``wire`` is the format's family (``anthropic`` or ``openai``)."""

    name: str = ""
    wire: str = ""
    # Whether the surface's requests carry ``stream`` (embeddings and model lists do not).
    streams: bool = True

    def hub_request(self, data: JSON) -> JSON:
        raise NotImplementedError

    def error_body(
        self, status: int, error_type: str, message: str, *, param: str | None = None
    ) -> JSON:
        raise NotImplementedError

    def error_response(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """An error in this surface's shape; ``error_type`` is Anthropic's vocabulary."""
        return json_response(
            self.error_body(status, error_type, message, param=param),
            status=status,
            headers=headers,
        )

    def mapped_error_response(
        self, error: MappedError, *, headers: dict[str, str] | None = None
    ) -> HttpResponse:
        """A hub-shaped (Anthropic) error, rendered for this client with its headers."""
        response = self.error_response(error.status, error.error_type, error.message)
        for name, value in {**error.headers, **(headers or {})}.items():
            response[name] = value
        return response

    def message_body(self, message: JSON, *, model: str) -> JSON:
        raise NotImplementedError

    def stream_renderer(self, *, model: str, include_usage: bool) -> StreamRenderer:
        raise NotImplementedError

    def include_usage(self, data: JSON) -> bool:
        return False


class AnthropicMessages(Surface):
    name = "messages"
    wire = ANTHROPIC

    def hub_request(self, data: JSON) -> JSON:
        return data

    def error_body(
        self, status: int, error_type: str, message: str, *, param: str | None = None
    ) -> JSON:
        return error_body(error_type, message)

    def message_body(self, message: JSON, *, model: str) -> JSON:
        return message

    def stream_renderer(self, *, model: str, include_usage: bool) -> StreamRenderer:
        return AnthropicStreamRenderer()


class _OpenAISurface(Surface):
    wire = OPENAI

    def error_response(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """OpenAI's status for the error too (529 overloaded is OpenAI's 503)."""
        body = self.error_body(status, error_type, message, param=param)
        openai_status = openai_status_for_anthropic(status, error_body(error_type, message))
        return json_response(body, status=openai_status, headers=headers)

    def error_body(
        self, status: int, error_type: str, message: str, *, param: str | None = None
    ) -> JSON:
        body = anthropic_error_to_openai(status, error_body(error_type, message))
        if param is not None:
            body["error"]["param"] = param
        return body

    def include_usage(self, data: JSON) -> bool:
        options = data.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


def _completion_id(prefix: str) -> str:
    return f"{prefix}-gw{uuid.uuid4().hex[:24]}"


class _OpenAIGenerating(_OpenAISurface):
    """An OpenAI surface that generates text: its translators to and from the hub."""

    id_prefix = ""
    to_hub: Callable[..., JSON]
    from_hub: Callable[..., JSON]
    chunks: Callable[..., Any]

    def hub_request(self, data: JSON) -> JSON:
        return self.to_hub(data, default_max_tokens=settings.GATEWAY_DEFAULT_MAX_TOKENS)

    def message_body(self, message: JSON, *, model: str) -> JSON:
        return self.from_hub(
            message,
            model=model,
            completion_id=_completion_id(self.id_prefix),
            created=int(time.time()),
        )

    def stream_renderer(self, *, model: str, include_usage: bool) -> StreamRenderer:
        translator = self.chunks(
            model=model,
            completion_id=_completion_id(self.id_prefix),
            created=int(time.time()),
            include_usage=include_usage,
        )
        return OpenAIStreamRenderer(translator)


class OpenAIChat(_OpenAIGenerating):
    name = "chat"
    id_prefix = "chatcmpl"
    to_hub = staticmethod(chat_request_to_anthropic)
    from_hub = staticmethod(anthropic_message_to_chat)
    chunks = AnthropicToChatChunks


class OpenAICompletions(_OpenAIGenerating):
    name = "completions"
    id_prefix = "cmpl"
    to_hub = staticmethod(completion_request_to_anthropic)
    from_hub = staticmethod(anthropic_message_to_completion)
    chunks = AnthropicToCompletionChunks


class OpenAIEmbeddings(_OpenAISurface):
    name = "embeddings"
    streams = False


class OpenAIModels(_OpenAISurface):
    name = "models"
    streams = False


ANTHROPIC_MESSAGES = AnthropicMessages()
OPENAI_CHAT = OpenAIChat()
OPENAI_COMPLETIONS = OpenAICompletions()
OPENAI_EMBEDDINGS = OpenAIEmbeddings()
OPENAI_MODELS = OpenAIModels()
