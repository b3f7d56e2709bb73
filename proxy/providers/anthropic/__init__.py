"""Anthropic: the Messages API with the client's own credential or a stored key.

An Anthropic client's request passes through byte for byte (``passthrough``); a client of
another format is translated through the hub, which *is* Anthropic's format, so only the answer
needs rendering in the client's format.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.http.response import HttpResponseBase

from proxy import jsonio
from proxy.headers import has_client_credential, upstream_request_headers
from proxy.http_client import upstream_client
from proxy.providers.anthropic.passthrough import (
    PROVIDER,
    anthropic_error,
    open_anthropic,
    relay_anthropic,
)
from proxy.providers.base import Call, LegFailure, Provider
from proxy.providers.common import (
    PassEvents,
    SSEEventDecoder,
    client_error,
    complete_message,
    translated_stream,
)
from proxy.translation.hub import may_hold_foreign_thinking, without_foreign_thinking

if TYPE_CHECKING:
    from proxy.planning import Leg

logger = logging.getLogger(__name__)

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODELS_PATH = "/v1/models"
API_VERSION = "2023-06-01"


def with_model(call: Call, model: str) -> bytes:
    """The client's exact bytes, or its body re-encoded when the upstream model differs
    (``anthropic/claude-…`` or an alias) or when it carries another provider's thinking."""
    data = call.data
    if may_hold_foreign_thinking(call.body):
        data = without_foreign_thinking(data)
    if data is call.data and data.get("model") == model:
        return call.body
    return jsonio.dumps({**data, "model": model})


def request_headers(leg: Leg, call: Call) -> dict[str, str]:
    """An Anthropic client's own headers (its credential first), else the stored key's."""
    if call.surface.wire == PROVIDER:
        headers = upstream_request_headers(call.headers)
        if not has_client_credential(headers) and leg.credential is not None:
            headers["x-api-key"] = leg.credential.secret
        return headers
    headers = {
        "content-type": "application/json",
        "accept-encoding": "identity",
        "anthropic-version": API_VERSION,
    }
    if leg.credential is not None:
        headers["x-api-key"] = leg.credential.secret
    return headers


class AnthropicProvider(Provider):
    kind = "anthropic"
    wire = "anthropic"
    label = "Anthropic"

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        headers = request_headers(leg, call)
        if call.surface.wire == PROVIDER:
            opened = await open_anthropic(
                path=MESSAGES_PATH,
                body=with_model(call, leg.model),
                headers=headers,
                context=call.context,
                pooled=call.pooled,
                context_failover=call.context_failover and call.has_next_leg,
            )
            return (
                opened if isinstance(opened, LegFailure) else relay_anthropic(opened, call.context)
            )
        hub = without_foreign_thinking(call.hub_request())
        body = jsonio.dumps({**hub, "model": leg.model})
        opened = await open_anthropic(
            path=MESSAGES_PATH,
            body=body,
            headers=headers,
            context=call.context,
            pooled=call.pooled,
            context_failover=call.context_failover and call.has_next_leg,
        )
        if isinstance(opened, LegFailure):
            return opened
        response = opened.response
        if response.status_code != 200:
            error = anthropic_error(response.status_code, dict(response.headers), response.content)
            return client_error(call, provider=PROVIDER, error=error)
        if opened.chunks is None:
            return complete_message(
                call, provider=PROVIDER, message=response.json(), upstream_model=leg.model
            )
        return await translated_stream(
            call,
            provider=PROVIDER,
            upstream_model=leg.model,
            response=response,
            decoder=SSEEventDecoder(),
            translator=PassEvents(),
            chunks=opened.rest(),
        )

    async def count_tokens(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        opened = await open_anthropic(
            path=COUNT_TOKENS_PATH,
            body=with_model(call, leg.model),
            headers=request_headers(leg, call),
            context=call.context,
            pooled=call.pooled,
            context_failover=call.context_failover and call.has_next_leg,
        )
        return opened if isinstance(opened, LegFailure) else relay_anthropic(opened, call.context)

    async def list_models(self, leg: Leg) -> list[str]:
        if leg.credential is None:
            return []
        response = await upstream_client().get(
            settings.GATEWAY_ANTHROPIC_BASE_URL + MODELS_PATH,
            headers={"x-api-key": leg.credential.secret, "anthropic-version": API_VERSION},
        )
        response.raise_for_status()
        return [str(item["id"]) for item in response.json().get("data", []) if item.get("id")]
