"""A local estimate of a request's input tokens, for providers that cannot count them.

Claude Code trusts ``count_tokens`` to decide when to compact a conversation, so a provider with
no counting endpoint answers with an estimate — clearly marked by the
``x-gateway-token-count: estimate`` header — and never with a fake 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpResponse

from proxy.context import json_response
from proxy.translation.estimate import estimate_input_tokens

if TYPE_CHECKING:
    from proxy.planning import Leg
    from proxy.providers.base import Call

ESTIMATE_HEADER = "x-gateway-token-count"


def estimated_count_response(call: Call, leg: Leg) -> HttpResponse:
    tokens = estimate_input_tokens(call.hub_request())
    headers = call.context.gateway_headers(leg.provider)
    headers[ESTIMATE_HEADER] = "estimate"
    return json_response({"input_tokens": tokens}, headers=headers)
