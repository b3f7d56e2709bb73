"""``GET /v1/models`` on both surfaces: the models an access key can use.

Claude models come from Anthropic itself when it answers (with the client's credential on the
Anthropic surface, as before), else from the model map. Every other provider the key can reach
lists its own models, named ``provider/model``; those lists are cached per credential for a few
minutes, so the model list costs upstream calls only now and then. Admin-defined aliases are
listed too.

What "can reach" means is planning's to say, not this module's: a model is listed only when
``proxy.planning.make_plan`` gives it a leg that could answer (``_usable_legs``). So Ollama is
listed without a stored credential (it needs none), and Claude models are not listed for a key
that has neither an Anthropic credential (the client's, or a stored key) nor a Bedrock fallback
for them. Routing rules are left out: matching one moves round-robin turns, and a listing is not
a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.keycache import KeyMetadata, ResolvedCredential
from proxy.context import json_response, new_request_id
from proxy.headers import (
    CREDENTIAL_HEADERS,
    asgi_request_headers,
    has_client_credential,
    upstream_request_headers,
)
from proxy.http_client import upstream_client
from proxy.planning import (
    ANTHROPIC,
    BEDROCK,
    OPENAI,
    Leg,
    PlanError,
    configured_providers,
    make_plan,
)
from proxy.providers.registry import provider_for
from proxy.routing import model_aliases, model_map

logger = logging.getLogger(__name__)

MODELS_PATH = "/v1/models"
_LIST_TTL = 300.0
_LIST_TIMEOUT = 5.0
# Outside Claude, a provider's plan does not depend on the model: planning is asked about this
# stand-in to learn whether, and with which credential, the key reaches the provider.
_ANY_MODEL = "*"
_cache: dict[tuple[str, int], tuple[float, list[str]]] = {}


def forget_model_lists() -> None:
    """Drop the cached provider lists (tests that move a provider's base URL)."""
    _cache.clear()


async def _usable_legs(
    model: str, metadata: KeyMetadata, *, surface_wire: str, client_credential: str = ""
) -> list[Leg]:
    """The legs planning would try for ``model``, less those that could never answer: none when
    planning refuses the model, and never the Anthropic leg it keeps only to let Anthropic
    refuse a request that brought no credential (``Plan.deferred_reason``)."""
    try:
        plan = await make_plan(
            requested_model=model,
            metadata=metadata,
            surface_wire=surface_wire,
            client_credential=client_credential,
        )
    except PlanError:
        return []
    return plan.legs[1:] if plan.deferred_reason else plan.legs


async def _listed(leg: Leg) -> list[str]:
    # Ollama needs no credential: its one list per process is keyed 0.
    key = (leg.provider, leg.credential.id if leg.credential is not None else 0)
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        async with asyncio.timeout(_LIST_TIMEOUT):
            ids = await provider_for(leg.kind).list_models(leg)
    except Exception as exc:
        logger.info("models: %s did not list its models: %s", leg.provider, type(exc).__name__)
        ids = cached[1] if cached is not None else []
    _cache[key] = (now + _LIST_TTL, ids)
    return ids


async def other_provider_models(
    metadata: KeyMetadata, *, surface_wire: str
) -> list[tuple[str, str]]:
    """``(provider, "provider/model")`` for every non-Claude provider the key can reach."""
    legs: list[Leg] = []
    for name in configured_providers(metadata):
        # Claude models are listed by name (below); Bedrock model ids are not listed.
        if name in (ANTHROPIC, BEDROCK):
            continue
        usable = await _usable_legs(f"{name}/{_ANY_MODEL}", metadata, surface_wire=surface_wire)
        if usable:
            legs.append(usable[0])
    lists = await asyncio.gather(*(_listed(leg) for leg in legs))
    return [
        (leg.provider, f"{leg.provider}/{model}")
        for leg, ids in zip(legs, lists, strict=True)
        for model in ids
    ]


async def _claude_models(
    metadata: KeyMetadata, *, surface_wire: str, client_credential: str = ""
) -> list[str]:
    """The Claude model names the key can use: Anthropic's own list when a stored key gets
    one, else the model map's names; only those planning finds a leg for (an Anthropic
    credential, or a Bedrock fallback for that model)."""
    names: list[str] = []
    stored = metadata.credentials.get(ANTHROPIC)
    if stored is not None and not stored.error:
        names = await _listed(Leg(ANTHROPIC, ANTHROPIC, "", stored))
    if not names:
        await model_map.get("")  # refreshes the map when stale
        names = sorted(model_map.names())
    return [
        name
        for name in names
        if await _usable_legs(
            f"{ANTHROPIC}/{name}",
            metadata,
            surface_wire=surface_wire,
            client_credential=client_credential,
        )
    ]


async def _alias_names(
    metadata: KeyMetadata, *, surface_wire: str, client_credential: str = ""
) -> list[str]:
    """The aliases whose target the key can use."""
    await model_aliases.get("")
    return [
        alias
        for alias in sorted(model_aliases.names())
        if await _usable_legs(
            alias, metadata, surface_wire=surface_wire, client_credential=client_credential
        )
    ]


def _client_credential(headers: dict[str, str]) -> str:
    """The client's own Anthropic credential: what the request flow gives planning on this
    surface."""
    return next((headers[name] for name in CREDENTIAL_HEADERS if headers.get(name)), "")


async def anthropic_models(request: HttpRequest, metadata: KeyMetadata) -> HttpResponse:
    """Anthropic's model list (passed through when the client's credential gets one) plus the
    other providers' models; when Anthropic cannot answer, the models the map can serve."""
    headers = upstream_request_headers(asgi_request_headers(request.META))
    client_credential = _client_credential(headers)
    stored = metadata.credentials.get(ANTHROPIC)
    if not client_credential and stored is not None and not stored.error:
        headers["x-api-key"] = stored.secret
    query = request.META.get("QUERY_STRING", "")
    url = settings.GATEWAY_ANTHROPIC_BASE_URL + MODELS_PATH + (f"?{query}" if query else "")
    request_id = new_request_id()
    others = await other_provider_models(metadata, surface_wire=ANTHROPIC)
    extra = [model for _, model in others] + await _alias_names(
        metadata, surface_wire=ANTHROPIC, client_credential=client_credential
    )
    if has_client_credential(headers):
        try:
            response = await upstream_client().get(url, headers=headers)
        except Exception as exc:
            logger.info("models: anthropic unreachable: %s", type(exc).__name__)
        else:
            if response.status_code < 500 and response.status_code != 429:
                if not extra or response.status_code != 200:
                    passthrough = HttpResponse(response.content, status=response.status_code)
                    passthrough["content-type"] = response.headers.get(
                        "content-type", "application/json"
                    )
                    passthrough["x-gateway-provider"] = "anthropic"
                    passthrough["x-gateway-request-id"] = request_id
                    return passthrough
                listed = response.json()
                listed["data"] = list(listed.get("data") or []) + _anthropic_entries(extra)
                listed["last_id"] = listed["data"][-1]["id"] if listed["data"] else None
                return json_response(
                    listed,
                    headers={"x-gateway-provider": "anthropic", "x-gateway-request-id": request_id},
                )
    names = await _claude_models(
        metadata, surface_wire=ANTHROPIC, client_credential=client_credential
    )
    data = _anthropic_entries(names + extra)
    body = {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return json_response(
        body, headers={"x-gateway-provider": "bedrock", "x-gateway-request-id": request_id}
    )


def _anthropic_entries(names: list[str]) -> list[dict[str, Any]]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0))
    return [
        {"type": "model", "id": name, "display_name": name, "created_at": created} for name in names
    ]


async def openai_models(request: HttpRequest, metadata: KeyMetadata) -> HttpResponse:
    """The OpenAI-shaped list: every model as ``provider/model``, aliases by their name."""
    request_id = new_request_id()
    entries: list[tuple[str, str]] = [
        (ANTHROPIC, f"{ANTHROPIC}/{name}")
        for name in await _claude_models(metadata, surface_wire=OPENAI)
    ]
    entries += await other_provider_models(metadata, surface_wire=OPENAI)
    entries += [("gateway", name) for name in await _alias_names(metadata, surface_wire=OPENAI)]
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": owner}
        for owner, model in entries
    ]
    return json_response(
        {"object": "list", "data": data}, headers={"x-gateway-request-id": request_id}
    )


async def credential_check(credential: ResolvedCredential) -> tuple[bool, str]:
    """Ask the provider for its model list with this credential: (worked, what to tell the
    admin). Used by the admin's "Test" action; never raises."""
    if credential.error:
        return False, credential.error
    if credential.provider == BEDROCK:
        return False, "Bedrock has no model list here: send a request to check it."
    kind = credential.provider
    leg = Leg(credential.provider_key, kind, "", credential)
    try:
        async with asyncio.timeout(_LIST_TIMEOUT * 2):
            ids = await provider_for(kind).list_models(leg)
    except httpx.HTTPStatusError as exc:
        return False, f"the provider answered {exc.response.status_code}"
    except Exception as exc:
        return False, f"no answer ({type(exc).__name__})"
    sample = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
    return True, f"{len(ids)} models" + (f": {sample}" if ids else "")
