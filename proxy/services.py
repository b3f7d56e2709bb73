"""The proxy's request flow: parse the client's request, make a plan, try its legs in order.

Views call one function per client operation (``proxy_messages``, ``proxy_chat``...); each
returns the client's response. Whatever the surface and the providers, a request goes:

    surface parses the body ─▶ plan (legs) ─▶ legs tried at most once each, in order
        ─▶ the first leg that answers answers the client (in the client's format)
        ─▶ one usage event

A leg whose circuit is open (or, for Anthropic, that has no credential to send) is tried last
instead of first. A leg's failure moves on to the next leg only before any byte reached the
client. When every leg failed, the client gets the most useful error: the first leg's own reply
when it had one (Claude Code reads its type, wording and retry-after), else a later leg's, else
the gateway's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from accounts.keycache import KeyMetadata
from gateway_project.observability import NO_FALLBACK
from governance.enforcement import Admission, estimate_call
from governance.enforcement import admit as governance_admit
from proxy import jsonio
from proxy.circuit import circuit_name, circuits
from proxy.context import (
    FALLBACK_ERROR_HEADER,
    NO_FALLBACK_HEADER,
    SESSION_HEADER,
    ProxyContext,
    new_request_id,
)
from proxy.headers import asgi_request_headers, upstream_request_headers
from proxy.planning import Leg, Plan, PlanError, make_plan
from proxy.pools.flow import leg_unavailable, try_leg
from proxy.providers.base import Call, LegFailure, Provider, no_answer_error
from proxy.providers.registry import provider_for
from proxy.rules import RouteRequest
from proxy.surfaces import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    Surface,
)
from proxy.translation.hub import TranslationError

logger = logging.getLogger(__name__)

LegOperation = Callable[[Provider, Leg, Call], Awaitable[HttpResponseBase | LegFailure]]


class BadRequest(Exception):
    def __init__(
        self, status: int, error_type: str, message: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param


def parse_body(
    body: bytes, *, require_max_tokens: bool, require_messages: bool = True
) -> dict[str, Any]:
    """The request JSON, checked just enough to route it; the upstream judges the rest."""
    try:
        data = jsonio.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            400, "invalid_request_error", f"The body is not valid JSON: {exc}"
        ) from exc
    except RecursionError as exc:
        raise BadRequest(400, "invalid_request_error", "The body is nested too deeply.") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "invalid_request_error", "The body must be a JSON object.")
    if not isinstance(data.get("model"), str) or not data["model"]:
        raise BadRequest(400, "invalid_request_error", "model: Field required", "model")
    if require_messages and not isinstance(data.get("messages"), list):
        raise BadRequest(400, "invalid_request_error", "messages: Field required", "messages")
    if require_max_tokens and "max_tokens" not in data:
        raise BadRequest(400, "invalid_request_error", "max_tokens: Field required", "max_tokens")
    return data


def _client_anthropic_credential(headers: dict[str, str]) -> str:
    return headers.get("x-api-key") or headers.get("authorization") or ""


def _new_context(request: HttpRequest, metadata: KeyMetadata, data: dict[str, Any]) -> ProxyContext:
    session = request.META.get("HTTP_" + SESSION_HEADER.upper().replace("-", "_"), "")
    return ProxyContext(
        metadata=metadata,
        request_id=new_request_id(),
        session_id=str(session)[:100],
        requested_model=data["model"],
        stream=bool(data.get("stream")),
    )


async def _generate(provider: Provider, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
    return await provider.generate(leg, call)


async def _count_tokens(provider: Provider, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
    return await provider.count_tokens(leg, call)


async def _embed(provider: Provider, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
    return await provider.embed(leg, call)


async def _order(
    plan: Plan, *, use_circuits: bool, metadata: KeyMetadata | None = None
) -> tuple[list[Leg], str]:
    """The legs in the order to try them, and why the first leg of the plan was moved to the
    end (its circuit is open, every key of its pool is cooling down, or Anthropic has no
    credential to send), or ""."""
    ready: list[Leg] = []
    deferred: list[Leg] = []
    first_skip_reason = ""
    for index, leg in enumerate(plan.legs):
        reason = plan.deferred_reason if index == 0 else ""
        if not reason and use_circuits:
            # A pooled leg is ready while one of its members is (proxy.pools.flow).
            pooled = await leg_unavailable(leg, metadata) if metadata is not None else None
            if pooled is not None:
                reason = pooled
            else:
                reason = await circuits.should_skip(
                    circuit_name(leg.provider, leg.circuit_credential)
                )
        if reason and index == 0:
            first_skip_reason = reason
        (deferred if reason else ready).append(leg)
    return ready + deferred, first_skip_reason


async def run_plan(
    plan: Plan, call: Call, operation: LegOperation, *, use_circuits: bool = True
) -> HttpResponseBase:
    """Try the plan's legs, each at most once, and answer with the first that answers."""
    context = call.context
    failures: list[tuple[Leg, LegFailure]] = []
    legs, skip_reason = await _order(plan, use_circuits=use_circuits, metadata=context.metadata)
    # A routing rule's later targets may have larger context windows than its first.
    call.context_failover = bool(plan.rule)
    for position, leg in enumerate(legs):
        if failures and _past_deadline(plan, context):
            break
        call.has_next_leg = position < len(legs) - 1
        # A fallback leg says why it is answering: the last failure, or why the first leg of
        # the plan was skipped. The first leg itself answers as no fallback.
        if leg is plan.legs[0]:
            context.fallback_reason = ""
        elif failures:
            context.fallback_reason = failures[-1][1].reason
        else:
            context.fallback_reason = skip_reason
        # One credential, or the members of the leg's key pool in turn (proxy.pools.flow).
        outcome = await try_leg(leg, call, operation, use_circuits=use_circuits)
        if isinstance(outcome, LegFailure):
            failures.append((leg, outcome))
            continue
        return outcome
    return _every_leg_failed(plan, call, failures)


def _past_deadline(plan: Plan, context: ProxyContext) -> bool:
    """Whether the plan's total deadline (a routing rule's) has passed: no further leg then."""
    if plan.deadline_seconds is None:
        return False
    return time.perf_counter() - context.started >= plan.deadline_seconds


def _every_leg_failed(
    plan: Plan, call: Call, failures: list[tuple[Leg, LegFailure]]
) -> HttpResponse:
    context = call.context
    by_plan_order = sorted(failures, key=lambda item: plan.legs.index(item[0]))
    leg, failure = next(
        ((leg, failure) for leg, failure in by_plan_order if failure.has_reply), by_plan_order[0]
    )
    provider = provider_for(leg.kind)
    if failure.raw is not None and provider.wire == call.surface.wire:
        response = failure.raw.as_response()
    else:
        response = call.surface.mapped_error_response(
            failure.error or no_answer_error(leg.provider, failure)
        )
    later = [item for item in by_plan_order if item[0] is not plan.legs[0]]
    if later and later[-1][1].error is not None:
        error = later[-1][1].error
        assert error is not None
        response[FALLBACK_ERROR_HEADER] = f"{error.status} {error.error_type}"
    for name, value in context.gateway_headers(leg.provider).items():
        response[name] = value
    context.tap(response.content)
    if plan.no_fallback is not None:
        NO_FALLBACK.labels(plan.no_fallback.reason).inc()
        logger.warning(
            "no fallback for %s after %s: %s",
            context.request_id,
            failures[0][1].reason,
            plan.no_fallback.detail,
        )
        response[NO_FALLBACK_HEADER] = plan.no_fallback.reason
    context.record(provider=leg.provider, status=response.status_code)
    return response


async def _serve(
    request: HttpRequest,
    metadata: KeyMetadata,
    body: bytes,
    surface: Surface,
    operation: LegOperation,
    *,
    require_max_tokens: bool = False,
    require_messages: bool = True,
    billable: bool = True,
    bedrock_allowed: bool = True,
    use_circuits: bool = True,
) -> HttpResponseBase:
    try:
        data = parse_body(
            body, require_max_tokens=require_max_tokens, require_messages=require_messages
        )
    except BadRequest as exc:
        return surface.error_response(exc.status, exc.error_type, exc.message, param=exc.param)
    context = _new_context(request, metadata, data)
    context.billable = billable
    if not surface.streams:
        context.stream = False
    headers = upstream_request_headers(asgi_request_headers(request.META))
    headers.pop("accept-encoding", None)
    context.capture_request(
        surface=surface.name,
        body=body,
        headers=headers,
        user_agent=str(request.META.get("HTTP_USER_AGENT", "")),
    )
    client_credential = (
        _client_anthropic_credential(headers) if surface.wire == ANTHROPIC_MESSAGES.wire else ""
    )
    call = Call(surface=surface, context=context, data=data, body=body, headers=headers)
    admission: Admission | HttpResponse | None = None
    try:
        plan = await make_plan(
            requested_model=context.requested_model,
            metadata=metadata,
            surface_wire=surface.wire,
            client_credential=client_credential,
            bedrock_allowed=bedrock_allowed,
            route=RouteRequest(
                model=context.requested_model,
                headers=headers,
                access_key_id=metadata.key_id,
                user_id=metadata.user_id,
                stream=context.stream,
                input_tokens=lambda: estimate_call(call).input_tokens,
            ),
        )
        # Rate limits and budgets of the key, its user and the first leg's provider.
        admission = await governance_admit(call, plan) if billable else None
        if isinstance(admission, HttpResponse):
            return admission
        if admission is not None:
            context.on_record = admission.settle
        response = await run_plan(plan, call, operation, use_circuits=use_circuits)
        if admission is not None:
            admission.apply(response)
        return response
    except PlanError as exc:
        return surface.error_response(exc.status, exc.error_type, exc.message, param=exc.param)
    except TranslationError as exc:
        if isinstance(admission, Admission):
            admission.release()
        return surface.error_response(400, "invalid_request_error", exc.message, param=exc.param)
    except asyncio.CancelledError:
        # The client hung up before the answer started (streams record their own hang-ups):
        # the request still cost upstream work and is accounted, with what is known.
        context.record(provider=context.attempting, status=499, disconnected=True)
        raise
    except Exception:
        if isinstance(admission, Admission):
            admission.release()
        raise


async def proxy_messages(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    return await _serve(
        request, metadata, body, ANTHROPIC_MESSAGES, _generate, require_max_tokens=True
    )


async def proxy_count_tokens(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    # Counting tokens costs nothing and uses no tokens: no usage event, no circuit changes.
    return await _serve(
        request,
        metadata,
        body,
        ANTHROPIC_MESSAGES,
        _count_tokens,
        billable=False,
        use_circuits=False,
    )


async def proxy_chat(request: HttpRequest, metadata: KeyMetadata, body: bytes) -> HttpResponseBase:
    return await _serve(request, metadata, body, OPENAI_CHAT, _generate)


async def proxy_completions(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    return await _serve(
        request, metadata, body, OPENAI_COMPLETIONS, _generate, require_messages=False
    )


async def proxy_embeddings(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    return await _serve(
        request,
        metadata,
        body,
        OPENAI_EMBEDDINGS,
        _embed,
        require_messages=False,
        bedrock_allowed=False,
    )


def unknown_route(method: str, path: str, surface: Surface = ANTHROPIC_MESSAGES) -> HttpResponse:
    return surface.error_response(404, "not_found_error", f"No route for {method} {path}.")
