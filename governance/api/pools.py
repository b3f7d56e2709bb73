"""Key pools: every pool (the credentials of one provider, or generic server, and scope) with
its strategy and its members' live state, and the strategy of a provider's pools.

A pool's members are the credentials themselves (``/api/admin/credentials``: create adds a
member, ``PATCH /{id}`` sets its weight and limits, enable/disable). The strategy is one per
provider key (``openai``, or a generic server's name such as ``vllm``) and applies in every
scope; without one set, pools go round robin.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from accounts.models import Provider
from accounts.selectors import credential_pools, pool_strategies
from accounts.services import credential_pool_set_strategy
from governance.api.auth import AUTH, require_write
from governance.api.errors import ApiError, ErrorOut
from proxy.pools.state import credential_states

pools_router = Router(auth=AUTH, tags=["pools"])

ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut}
Strategy = Literal["round_robin", "weighted", "least_in_flight", "least_tokens"]
_PROVIDER_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")


class MemberOut(Schema):
    id: int
    label: str
    fingerprint: str
    enabled: bool
    weight: int
    rpm_limit: int | None
    tpm_limit: int | None
    max_concurrency: int | None
    disabled_reason: str
    disabled_at: datetime | None
    cooldown_until: datetime | None = Field(description="Rate-limited until then (a 429).")
    cooldown_reason: str
    in_flight: int
    requests_this_minute: int
    tokens_this_minute: int


class PoolOut(Schema):
    provider: str
    name: str
    provider_key: str = Field(description="What strategies are set by: provider or name.")
    scope: str = Field(description="global, user or access_key")
    user_id: int | None
    access_key_id: int | None
    strategy: Strategy
    members: list[MemberOut]


class PoolFilter(Schema):
    provider: Literal["anthropic", "bedrock", "openai", "gemini", "ollama", "generic"] | None = None


class StrategyIn(Schema):
    strategy: Strategy


class StrategyOut(Schema):
    provider_key: str
    strategy: Strategy


def member_state(credential: Any, states: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A pool member with its live state (also the state API's shape)."""
    live = states.get(credential.pk, {})
    until = live.get("cooldown_until")
    return {
        "id": credential.pk,
        "label": credential.label,
        "fingerprint": credential.fingerprint,
        "enabled": credential.enabled,
        "weight": credential.weight,
        "rpm_limit": credential.rpm_limit,
        "tpm_limit": credential.tpm_limit,
        "max_concurrency": credential.max_concurrency,
        "disabled_reason": credential.disabled_reason,
        "disabled_at": credential.disabled_at,
        "cooldown_until": datetime.fromtimestamp(until, UTC) if until else None,
        "cooldown_reason": live.get("cooldown_reason", ""),
        "in_flight": live.get("in_flight", 0),
        "requests_this_minute": live.get("requests_this_minute", 0),
        "tokens_this_minute": live.get("tokens_this_minute", 0),
    }


@pools_router.get("", response={200: list[PoolOut], **ERRORS}, summary="Key pools and their state")
def pools_list(request: HttpRequest, params: Query[PoolFilter]) -> Any:
    strategies = pool_strategies()
    states = credential_states(time.time())
    pools = []
    for (provider, name, user_id, access_key_id), members in credential_pools(
        provider=params.provider
    ):
        provider_key = name or provider
        pools.append(
            {
                "provider": provider,
                "name": name,
                "provider_key": provider_key,
                "scope": "access_key" if access_key_id else "user" if user_id else "global",
                "user_id": user_id,
                "access_key_id": access_key_id,
                "strategy": strategies.get(provider_key, "round_robin"),
                "members": [member_state(member, states) for member in members],
            }
        )
    return pools


@pools_router.put(
    "/{provider_key}/strategy",
    response={200: StrategyOut, **ERRORS},
    summary="Set how a provider's pools pick their members",
)
def pools_set_strategy(request: HttpRequest, provider_key: str, payload: StrategyIn) -> Any:
    """``provider_key``: a built-in provider (``openai``) or a generic server's name
    (``vllm``). Applies to that provider's pools in every scope."""
    require_write(request, "accounts.change_providercredential")
    if not _PROVIDER_KEY.fullmatch(provider_key):
        raise ApiError(
            400,
            "provider_key: a provider (openai...) or a generic server's name: lowercase letters, "
            "digits, - and _.",
            "provider_key",
        )
    if provider_key == Provider.GENERIC:
        raise ApiError(400, "Generic servers are named by their name, e.g. vllm.", "provider_key")
    builtin = provider_key in Provider.values
    pool = credential_pool_set_strategy(
        provider=provider_key if builtin else Provider.GENERIC,
        name="" if builtin else provider_key,
        strategy=payload.strategy,
    )
    return {"provider_key": pool.provider_key, "strategy": pool.strategy}
