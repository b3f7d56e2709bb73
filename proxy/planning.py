"""The plan of a request: which legs (provider, upstream model, credential) to try, in order.

``make_plan`` turns the model a client asked for into legs:

1. an admin-defined alias (``fast`` → ``ollama/qwen3``) is replaced by its target;
2. ``provider/model`` names its provider: a built-in one (``openai/gpt-4.1``) or a generic
   OpenAI-compatible server by the name its credential was given (``vllm/qwen2.5-72b``);
3. a bare name goes where its family lives: ``claude-*`` to Anthropic, ``gpt-*``, ``o1``…
   ``o4`` series and ``text-embedding-*`` to OpenAI, ``gemini-*`` to Gemini; anything else to
   the surface's own provider (Anthropic for ``/v1/messages``, OpenAI for the OpenAI surface).

A Claude model (bare or ``anthropic/…``) gets the default plan: Anthropic, then Bedrock with the
mapped model (``proxy.routing.bedrock_target``). Every other plan has one leg.

Before all of that, the admin's routing rules (proxy.rules) are matched against the request; the
first that matches makes the plan instead: its targets, tier by tier, each tier in the order of
the rule's strategy, at most ``max_attempts`` of them. Each leg carries its provider's key pool;
the loop that runs the plan, and picks a pool member per leg, is ``proxy.services``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from accounts.keycache import KeyMetadata, ResolvedCredential
from proxy.routing import BedrockTarget, NoFallback, bedrock_target, model_aliases
from proxy.rules import CompiledRule, RouteRequest, Target, ordered_targets, routing_rules

ANTHROPIC = "anthropic"
BEDROCK = "bedrock"
OPENAI = "openai"
GEMINI = "gemini"
OLLAMA = "ollama"
GENERIC = "generic"
BUILTIN_PROVIDERS = (ANTHROPIC, BEDROCK, OPENAI, GEMINI, OLLAMA)

_OPENAI_MODEL = re.compile(
    r"^(gpt-|chatgpt-|text-embedding-|davinci|babbage|omni-moderation|o\d(-|$))", re.IGNORECASE
)
_GEMINI_MODEL = re.compile(r"^(gemini-|gemma-|text-embedding-004|embedding-00)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Leg:
    """One upstream to try: ``provider`` is what clients call it (``openai``, ``vllm``),
    ``kind`` the implementation in the provider registry (``openai``, ``generic``)."""

    provider: str
    kind: str
    model: str
    credential: ResolvedCredential | None = field(default=None, repr=False)
    # Every credential of the leg's key pool (``credential`` is one of them); the request flow
    # picks the one to use when it tries the leg.
    pool: tuple[ResolvedCredential, ...] = field(default=(), repr=False)
    bedrock: BedrockTarget | None = field(default=None, repr=False)
    # The client's own Anthropic credential (x-api-key or authorization), forwarded as is.
    client_credential: str = field(default="", repr=False)

    @property
    def circuit_credential(self) -> str:
        """What identifies this upstream account for its circuit breaker."""
        if self.client_credential:
            return self.client_credential
        if self.bedrock is not None:
            return self.bedrock.secret
        if self.credential is not None:
            return self.credential.secret or self.credential.endpoint_url or str(self.credential.id)
        return self.provider


@dataclass
class Plan:
    legs: list[Leg]
    # Set when a Claude plan has no Bedrock leg: why (reported in x-gateway-no-fallback-reason).
    no_fallback: NoFallback | None = None
    # A leg that cannot be tried first, and why (the client sent no Anthropic credential).
    deferred_reason: str = ""
    # The routing rule that made the plan ("" for the default route).
    rule: str = ""
    # No further leg is tried once this many seconds have passed since the request began.
    deadline_seconds: float | None = None


class PlanError(Exception):
    """The request names nothing the gateway can route: a 4xx in the client's format."""

    def __init__(self, status: int, error_type: str, message: str, param: str = "model") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param


def default_provider(model: str, *, surface_wire: str) -> str:
    """The provider of a bare model name."""
    if model.lower().startswith("claude"):
        return ANTHROPIC
    if _OPENAI_MODEL.match(model):
        return OPENAI
    if _GEMINI_MODEL.match(model):
        return GEMINI
    return ANTHROPIC if surface_wire == ANTHROPIC else OPENAI


def configured_providers(metadata: KeyMetadata) -> list[str]:
    """The providers this key can reach, as clients name them (Ollama needs no credential)."""
    names = set(metadata.credentials) | {OLLAMA}
    return sorted(names)


def split_model(model: str, metadata: KeyMetadata) -> tuple[str | None, str]:
    """``(provider, upstream model)``; provider None for a bare name. Raises PlanError for an
    unknown prefix."""
    if "/" not in model:
        return None, model
    prefix, rest = model.split("/", 1)
    known = prefix in BUILTIN_PROVIDERS or _generic_credential(metadata, prefix) is not None
    if not known:
        configured = ", ".join(configured_providers(metadata))
        raise PlanError(
            400,
            "invalid_request_error",
            f"Unknown provider {prefix!r} in model {model!r}. Use provider/model with one of: "
            f"{configured}.",
        )
    if not rest:
        raise PlanError(400, "invalid_request_error", f"Model {model!r} names no model.")
    return prefix, rest


def _generic_credential(metadata: KeyMetadata, name: str) -> ResolvedCredential | None:
    credential = metadata.credentials.get(name)
    if credential is not None and credential.provider == GENERIC:
        return credential
    return None


def _missing_credential(provider: str) -> PlanError:
    return PlanError(
        400,
        "invalid_request_error",
        f"No {provider} credential applies to this access key. An admin can add one in the "
        f"admin (Provider credentials) or with `manage.py set_provider_credential {provider} "
        "--secret-stdin`.",
    )


def _usable(credential: ResolvedCredential | None, provider: str) -> ResolvedCredential:
    if credential is None:
        raise _missing_credential(provider)
    if credential.error:
        raise PlanError(
            403, "permission_error", f"The {provider} credential cannot be used: {credential.error}"
        )
    return credential


async def make_plan(
    *,
    requested_model: str,
    metadata: KeyMetadata,
    surface_wire: str,
    client_credential: str = "",
    bedrock_allowed: bool = True,
    route: RouteRequest | None = None,
) -> Plan:
    """The legs for ``requested_model``. ``client_credential`` is the client's own Anthropic
    credential (Anthropic surface only). ``route`` describes the request for routing rules; the
    first rule that matches makes the plan, else the default route does."""
    if route is not None:
        rule = await routing_rules.match(route)
        if rule is not None:
            return await _rule_plan(
                rule,
                requested_model,
                metadata,
                surface_wire=surface_wire,
                client_credential=client_credential,
                bedrock_allowed=bedrock_allowed,
            )
    model = (await model_aliases.get(requested_model)) or requested_model
    provider, upstream_model = split_model(model, metadata)
    if provider is None:
        provider = default_provider(upstream_model, surface_wire=surface_wire)
    return await _provider_plan(
        provider,
        upstream_model,
        metadata,
        surface_wire=surface_wire,
        client_credential=client_credential,
        bedrock_allowed=bedrock_allowed,
    )


async def _provider_plan(
    provider: str,
    upstream_model: str,
    metadata: KeyMetadata,
    *,
    surface_wire: str,
    client_credential: str,
    bedrock_allowed: bool,
) -> Plan:
    """The plan for one provider (as clients name it) and upstream model."""
    if provider == ANTHROPIC:
        return await _claude_plan(
            upstream_model,
            metadata,
            surface_wire=surface_wire,
            client_credential=client_credential,
            bedrock_allowed=bedrock_allowed,
        )
    if provider == BEDROCK:
        target = await bedrock_target(metadata, upstream_model, model_id=upstream_model)
        return _bedrock_plan(target)
    if provider == OLLAMA:
        credential = metadata.credentials.get(OLLAMA)
        if credential is not None and credential.error:
            credential = _usable(credential, OLLAMA)
        return Plan(legs=[_stored_leg(OLLAMA, OLLAMA, upstream_model, credential, metadata)])
    if provider in (OPENAI, GEMINI):
        credential = _usable(metadata.credentials.get(provider), provider)
        return Plan(legs=[_stored_leg(provider, provider, upstream_model, credential, metadata)])
    credential = _usable(_generic_credential(metadata, provider), provider)
    return Plan(legs=[_stored_leg(provider, GENERIC, upstream_model, credential, metadata)])


def _bedrock_plan(target: BedrockTarget | NoFallback) -> Plan:
    """The one Bedrock leg of a request sent to Bedrock itself; why not, as the client's 400."""
    if isinstance(target, NoFallback):
        raise PlanError(400, "invalid_request_error", f"Bedrock cannot be used: {target.detail}")
    return Plan(legs=[Leg(BEDROCK, BEDROCK, target.model_id, bedrock=target)])


async def _target_plan(
    target: Target,
    requested_model: str,
    metadata: KeyMetadata,
    *,
    surface_wire: str,
    client_credential: str,
) -> Plan:
    """One rule target's leg. An empty target model means the model the client asked for
    (without its ``provider/`` prefix); on Bedrock, that model's model-map entry."""
    if target.model:
        model = target.model
    else:
        aliased = (await model_aliases.get(requested_model)) or requested_model
        model = split_model(aliased, metadata)[1]
    if target.provider == BEDROCK and not target.model:
        return _bedrock_plan(await bedrock_target(metadata, model))
    # An Anthropic target is only Anthropic: the rule's own tiers say what comes after it.
    return await _provider_plan(
        target.provider,
        model,
        metadata,
        surface_wire=surface_wire,
        client_credential=client_credential,
        bedrock_allowed=False,
    )


async def _rule_plan(
    rule: CompiledRule,
    requested_model: str,
    metadata: KeyMetadata,
    *,
    surface_wire: str,
    client_credential: str,
    bedrock_allowed: bool,
) -> Plan:
    """The legs of a rule's targets in the order its tiers and strategy give. A target this key
    cannot use (no credential of its scope, no Bedrock mapping) is left out; when none is left,
    the first target's reason is the client's error."""
    legs: list[Leg] = []
    deferred_reason = ""
    first_problem: PlanError | None = None
    for target in ordered_targets(rule):
        if target.provider == BEDROCK and not bedrock_allowed:
            continue
        try:
            plan = await _target_plan(
                target,
                requested_model,
                metadata,
                surface_wire=surface_wire,
                client_credential=client_credential,
            )
        except PlanError as exc:
            first_problem = first_problem or exc
            continue
        if not legs:
            deferred_reason = plan.deferred_reason
        legs.extend(plan.legs)
    if not legs:
        raise first_problem or PlanError(
            400,
            "invalid_request_error",
            f"Routing rule {rule.name!r} has no target this request can use.",
        )
    if rule.max_attempts is not None:
        legs = legs[: rule.max_attempts]
    return Plan(
        legs=legs,
        deferred_reason=deferred_reason,
        rule=rule.name,
        deadline_seconds=rule.deadline_seconds,
    )


def _stored_leg(
    provider: str,
    kind: str,
    model: str,
    credential: ResolvedCredential | None,
    metadata: KeyMetadata,
) -> Leg:
    """A leg that uses a stored credential, with the rest of its key pool."""
    pool = metadata.pool(credential.provider_key) if credential is not None else ()
    return Leg(provider, kind, model, credential=credential, pool=pool)


async def _claude_plan(
    model: str,
    metadata: KeyMetadata,
    *,
    surface_wire: str,
    client_credential: str,
    bedrock_allowed: bool,
) -> Plan:
    stored = metadata.credentials.get(ANTHROPIC)
    if stored is not None and stored.error:
        stored = None
    legs: list[Leg] = []
    deferred_reason = ""
    if client_credential:
        legs.append(Leg(ANTHROPIC, ANTHROPIC, model, client_credential=client_credential))
    elif stored is not None:
        legs.append(_stored_leg(ANTHROPIC, ANTHROPIC, model, stored, metadata))
    elif surface_wire == ANTHROPIC:
        # Forwarded without a credential, Anthropic answers with its own 401, which is what a
        # client with no credential and no fallback should see; with a fallback, Bedrock first.
        legs.append(Leg(ANTHROPIC, ANTHROPIC, model))
        deferred_reason = "no_anthropic_credential"
    no_fallback: NoFallback | None = None
    if bedrock_allowed:
        target = await bedrock_target(metadata, model)
        if isinstance(target, BedrockTarget):
            legs.append(Leg(BEDROCK, BEDROCK, target.model_id, bedrock=target))
        else:
            no_fallback = target
    if not legs:
        raise _missing_credential(ANTHROPIC)
    return Plan(legs=legs, no_fallback=no_fallback, deferred_reason=deferred_reason)
