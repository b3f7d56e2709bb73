"""AWS Bedrock: Claude (and other) models through InvokeModel or Converse, with a Bedrock API
key. The leg's ``BedrockTarget`` (model, endpoint, mode, key) comes from ``proxy.routing``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http.response import HttpResponseBase

from proxy.providers.base import Call, LegFailure, Provider
from proxy.providers.bedrock.provider import bedrock_count_tokens, call_bedrock
from proxy.translation.betas import bedrock_betas

if TYPE_CHECKING:
    from proxy.planning import Leg


def _betas(call: Call) -> list[str]:
    return bedrock_betas(call.headers.get("anthropic-beta"))


class BedrockProvider(Provider):
    kind = "bedrock"
    wire = "bedrock"
    label = "Bedrock"

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        assert leg.bedrock is not None  # planning gives every Bedrock leg its target
        return await call_bedrock(target=leg.bedrock, call=call, betas=_betas(call))

    async def count_tokens(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        assert leg.bedrock is not None
        return await bedrock_count_tokens(leg.bedrock, call, _betas(call))
