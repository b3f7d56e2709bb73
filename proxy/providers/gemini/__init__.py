"""Google Gemini through the Gemini API (``generateContent``, ``streamGenerateContent`` with
SSE, ``countTokens``, ``batchEmbedContents``, ``models``), with the stored API key in
``x-goog-api-key``. Every request is translated through the hub (``proxy.translation.gemini``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings
from django.http.response import HttpResponseBase

from proxy.context import json_response
from proxy.http_client import upstream_client
from proxy.providers.base import Call, LegFailure, Provider, transport_failure
from proxy.providers.common import (
    SSEDataDecoder,
    dumps,
    open_upstream,
    read_json,
    translated_embed,
    translated_generate,
    upstream_error,
)
from proxy.providers.media import call_with_inlined_images
from proxy.translation.embedding_vectors import openai_embedding_texts, openai_encoding_format
from proxy.translation.estimate import estimate_text_tokens
from proxy.translation.gemini import (
    anthropic_to_gemini,
    gemini_count_tokens_body,
    gemini_count_tokens_result,
    gemini_embeddings_to_openai,
    gemini_models_to_ids,
    openai_embeddings_to_gemini,
)
from proxy.translation.gemini_response import (
    GeminiStreamToAnthropic,
    gemini_error_to_anthropic,
    gemini_reasoning_tokens,
    gemini_retry_after_seconds,
    gemini_to_anthropic,
)

if TYPE_CHECKING:
    from proxy.planning import Leg

PROVIDER = "gemini"


def _retry_after(body: Any) -> dict[str, str]:
    seconds = gemini_retry_after_seconds(body)
    return {"retry-after": str(seconds)} if seconds is not None else {}


class GeminiProvider(Provider):
    kind = "gemini"
    wire = "gemini"
    label = "Gemini"

    def base_url(self, leg: Leg) -> str:
        endpoint = leg.credential.endpoint_url if leg.credential is not None else ""
        return (endpoint or settings.GATEWAY_GEMINI_BASE_URL).rstrip("/")

    def model_url(self, leg: Leg, action: str) -> str:
        return f"{self.base_url(leg)}/v1beta/models/{quote(leg.model, safe='-._')}:{action}"

    def headers(self, leg: Leg) -> dict[str, str]:
        assert leg.credential is not None
        return {"content-type": "application/json", "x-goog-api-key": leg.credential.secret}

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        hub = await call_with_inlined_images(call)
        message_id = f"msg_gw{uuid.uuid4().hex[:24]}"
        model = call.context.requested_model
        action = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        return await translated_generate(
            call,
            provider=leg.provider,
            upstream_model=leg.model,
            url=self.model_url(leg, action),
            headers=self.headers(leg),
            payload=anthropic_to_gemini(hub, model=leg.model),
            map_error=gemini_error_to_anthropic,
            to_message=lambda data: gemini_to_anthropic(data, model=model, message_id=message_id),
            decoder=SSEDataDecoder,
            translator=lambda: GeminiStreamToAnthropic(model=model, message_id=message_id),
            extra_error_headers=_retry_after,
            reasoning_of=lambda data: gemini_reasoning_tokens(data.get("usageMetadata")),
        )

    async def count_tokens(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        hub = call.hub_request()
        response = await open_upstream(
            call,
            provider=leg.provider,
            method="POST",
            url=self.model_url(leg, "countTokens"),
            headers=self.headers(leg),
            content=dumps(gemini_count_tokens_body(hub, model=leg.model)),
        )
        if isinstance(response, LegFailure):
            return response
        if response.status_code != 200:
            return await upstream_error(
                call, response, provider=leg.provider, map_error=gemini_error_to_anthropic
            )
        try:
            _, parsed = await read_json(response)
            tokens = gemini_count_tokens_result(parsed)
        except (ValueError, TypeError, AttributeError) as exc:
            return transport_failure(exc)
        return json_response(
            {"input_tokens": tokens}, headers=call.context.gateway_headers(leg.provider)
        )

    async def embed(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        # Gemini reports no token count for embeddings: the gateway's estimate is recorded.
        tokens = sum(estimate_text_tokens(text) for text in openai_embedding_texts(call.data))
        encoding = openai_encoding_format(call.data)
        return await translated_embed(
            call,
            provider=leg.provider,
            upstream_model=leg.model,
            url=self.model_url(leg, "batchEmbedContents"),
            headers=self.headers(leg),
            payload=openai_embeddings_to_gemini(call.data, model=leg.model),
            map_error=gemini_error_to_anthropic,
            to_openai=lambda data: gemini_embeddings_to_openai(
                data,
                model=call.context.requested_model,
                input_tokens=tokens,
                encoding_format=encoding,
            ),
        )

    async def list_models(self, leg: Leg) -> list[str]:
        response = await upstream_client().get(
            f"{self.base_url(leg)}/v1beta/models", headers=self.headers(leg)
        )
        response.raise_for_status()
        return gemini_models_to_ids(response.json())
