"""Ollama through its native API (``/api/chat`` with NDJSON streams, ``/api/embed``,
``/api/tags``): the native API rather than Ollama's ``/v1`` because tools break streaming there.
No key by default; the endpoint is the credential's, else ``GATEWAY_OLLAMA_BASE_URL``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.http.response import HttpResponseBase

from proxy.http_client import upstream_client
from proxy.providers.base import Call, LegFailure, Provider
from proxy.providers.common import NDJSONDecoder, translated_embed, translated_generate
from proxy.providers.media import call_with_inlined_images
from proxy.translation.embedding_vectors import openai_encoding_format
from proxy.translation.ollama import (
    OllamaStreamToAnthropic,
    anthropic_to_ollama,
    ollama_embeddings_to_openai,
    ollama_error_to_anthropic,
    ollama_tags_to_ids,
    ollama_to_anthropic,
    openai_embeddings_to_ollama,
)

if TYPE_CHECKING:
    from proxy.planning import Leg


class OllamaProvider(Provider):
    kind = "ollama"
    wire = "ollama"
    label = "Ollama"

    def base_url(self, leg: Leg) -> str:
        endpoint = leg.credential.endpoint_url if leg.credential is not None else ""
        return (endpoint or settings.GATEWAY_OLLAMA_BASE_URL).rstrip("/")

    def headers(self, leg: Leg) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        # An Ollama behind an authenticating proxy (or ollama.com) takes a bearer key.
        if leg.credential is not None and leg.credential.secret:
            headers["authorization"] = f"Bearer {leg.credential.secret}"
        return headers

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        hub = await call_with_inlined_images(call)
        payload = anthropic_to_ollama({**hub, "stream": call.stream}, model=leg.model)
        message_id = f"msg_gw{uuid.uuid4().hex[:24]}"
        model = call.context.requested_model
        return await translated_generate(
            call,
            provider=leg.provider,
            upstream_model=leg.model,
            url=self.base_url(leg) + "/api/chat",
            headers=self.headers(leg),
            payload=payload,
            map_error=ollama_error_to_anthropic,
            to_message=lambda data: ollama_to_anthropic(data, model=model, message_id=message_id),
            decoder=NDJSONDecoder,
            translator=lambda: OllamaStreamToAnthropic(model=model, message_id=message_id),
        )

    async def embed(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        encoding = openai_encoding_format(call.data)
        return await translated_embed(
            call,
            provider=leg.provider,
            upstream_model=leg.model,
            url=self.base_url(leg) + "/api/embed",
            headers=self.headers(leg),
            payload=openai_embeddings_to_ollama(call.data, model=leg.model),
            map_error=ollama_error_to_anthropic,
            to_openai=lambda data: ollama_embeddings_to_openai(
                data, model=call.context.requested_model, encoding_format=encoding
            ),
        )

    async def list_models(self, leg: Leg) -> list[str]:
        response = await upstream_client().get(
            self.base_url(leg) + "/api/tags", headers=self.headers(leg)
        )
        response.raise_for_status()
        return ollama_tags_to_ids(response.json())
