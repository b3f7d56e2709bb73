"""OpenAI: ``GATEWAY_OPENAI_BASE_URL`` (or the credential's endpoint) with the stored key.

An OpenAI client's request passes through byte for byte (only ``model`` is rewritten when the
client used ``provider/model``, and streams always ask for usage); an Anthropic client's is
translated through the hub. Other OpenAI-compatible servers reuse this class from
``proxy.providers.generic``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.http.response import HttpResponseBase

from proxy.http_client import upstream_client
from proxy.providers.base import Call, LegFailure, Provider, transport_failure
from proxy.providers.common import (
    SSEDataDecoder,
    open_upstream,
    translated_generate,
    upstream_error,
)
from proxy.providers.openai import passthrough
from proxy.translation.openai_errors import openai_error_to_anthropic
from proxy.translation.openai_stream import ChatChunksToAnthropic
from proxy.translation.openai_upstream import (
    anthropic_request_to_chat,
    chat_completion_to_anthropic,
)

if TYPE_CHECKING:
    from proxy.planning import Leg

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"

_PATHS = {"chat": CHAT_PATH, "completions": COMPLETIONS_PATH, "embeddings": EMBEDDINGS_PATH}


class OpenAIProvider(Provider):
    kind = "openai"
    wire = "openai"
    label = "OpenAI"

    def base_url(self, leg: Leg) -> str:
        endpoint = leg.credential.endpoint_url if leg.credential is not None else ""
        base = (endpoint or settings.GATEWAY_OPENAI_BASE_URL).rstrip("/")
        # Base URLs are often written with the /v1 the paths add again.
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def headers(self, leg: Leg) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if leg.credential is not None and leg.credential.secret:
            headers["authorization"] = f"Bearer {leg.credential.secret}"
        return headers

    async def _passthrough(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        body, client_wants_usage = passthrough.stream_body(call, leg.model)
        response = await open_upstream(
            call,
            provider=leg.provider,
            method="POST",
            url=self.base_url(leg) + _PATHS[call.surface.name],
            headers=self.headers(leg),
            content=body,
        )
        if isinstance(response, LegFailure):
            return response
        if response.status_code != 200:
            return await upstream_error(
                call, response, provider=leg.provider, map_error=openai_error_to_anthropic
            )
        if not call.stream:
            try:
                await response.aread()
            except Exception as exc:
                await response.aclose()
                return transport_failure(exc)
            await response.aclose()
            return passthrough.complete(call, response, provider=leg.provider, model=leg.model)
        return passthrough.streaming(
            call,
            response,
            provider=leg.provider,
            model=leg.model,
            client_wants_usage=client_wants_usage,
        )

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        if call.surface.wire == self.wire:
            return await self._passthrough(leg, call)
        message_id = f"msg_gw{uuid.uuid4().hex[:24]}"
        model = call.context.requested_model
        return await translated_generate(
            call,
            provider=leg.provider,
            upstream_model=leg.model,
            url=self.base_url(leg) + CHAT_PATH,
            headers=self.headers(leg),
            payload=anthropic_request_to_chat(call.hub_request(), model=leg.model),
            map_error=openai_error_to_anthropic,
            to_message=lambda data: chat_completion_to_anthropic(
                data, model=model, message_id=message_id
            ),
            decoder=SSEDataDecoder,
            translator=lambda: ChatChunksToAnthropic(model=model, message_id=message_id),
            reasoning_of=passthrough.reasoning_of,
        )

    async def embed(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        return await self._passthrough(leg, call)

    async def list_models(self, leg: Leg) -> list[str]:
        response = await upstream_client().get(
            self.base_url(leg) + MODELS_PATH, headers=self.headers(leg)
        )
        response.raise_for_status()
        return sorted(str(item["id"]) for item in response.json().get("data", []) if item.get("id"))
