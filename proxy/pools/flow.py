"""The request flow's side of key pools: ``try_leg`` (the leg loop of proxy.services calls it
for every leg) and ``leg_unavailable`` (whether a pooled leg should be tried last). See the
package's docstring for what happens to a member on each kind of failure."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.response import HttpResponseBase

from accounts.keycache import KeyMetadata, ResolvedCredential
from gateway_project.observability import UPSTREAM_ERRORS
from governance.enforcement import usage_tokens
from proxy.circuit import circuit_name, circuits
from proxy.planning import Leg
from proxy.pools import limits
from proxy.pools.classify import Fault, FaultKind, classify
from proxy.pools.state import pool_state
from proxy.pools.strategies import ROUND_ROBIN, order_members
from proxy.providers.base import Call, LegFailure, Provider, gateway_error
from proxy.providers.registry import provider_for
from proxy.translation.errors import MappedError
from proxy.translation.sse import Usage

logger = logging.getLogger(__name__)

LegOperation = Callable[[Provider, Leg, Call], Awaitable[HttpResponseBase | LegFailure]]

_rng = random.SystemRandom()


def members_of(leg: Leg) -> tuple[ResolvedCredential, ...]:
    """The leg's pool; empty for a leg without stored credentials (client key, Bedrock)."""
    if leg.client_credential or leg.bedrock is not None:
        return ()
    if leg.pool:
        return leg.pool
    return (leg.credential,) if leg.credential is not None else ()


def _disabled(member: ResolvedCredential, metadata: KeyMetadata) -> bool:
    """Whether the gateway disabled ``member`` after ``metadata`` was loaded. (Metadata loaded
    in the instant between the mark and the database write still has it: its next fault
    reports it again, which invalidates the metadata once more.)"""
    at = pool_state.disabled_since(member.id)
    return at > 0 and at > metadata.loaded_at


def _circuit(leg: Leg, member: ResolvedCredential) -> str:
    return circuit_name(leg.provider, replace(leg, credential=member).circuit_credential)


async def leg_unavailable(leg: Leg, metadata: KeyMetadata) -> str | None:
    """Why a pooled leg should be tried last ("" when a member is ready); None for a leg
    without a pool (its own circuit decides)."""
    members = members_of(leg)
    if not members:
        return None
    await pool_state.ensure_synced()
    now = time.time()
    cooling = False
    for member in members:
        if _disabled(member, metadata):
            continue
        if pool_state.cooling_until(member.id, now) is not None:
            cooling = True
            continue
        if not circuits.is_open(_circuit(leg, member)):
            return ""
    return "pool_rate_limited" if cooling else "circuit_open"


def failure_fault(failure: LegFailure, now: float) -> Fault:
    """What a leg failure says about its credential."""
    if failure.raw is not None:
        headers = {name.lower(): value for name, value in failure.raw.headers.items()}
        return classify(failure.raw.status, headers, failure.raw.body, now=now)
    if failure.error is not None:
        headers = {name.lower(): value for name, value in failure.error.headers.items()}
        return classify(failure.error.status, headers, failure.error.body, now=now)
    return Fault(FaultKind.SERVER, failure.reason)  # no answer at all: a connection failure


async def attempt(leg: Leg, call: Call, operation: LegOperation) -> HttpResponseBase | LegFailure:
    """Ask one leg (with one credential), as the request log and the metrics see it."""
    context = call.context
    context.attempting = leg.provider
    context.attempt_started(
        provider=leg.provider, model=leg.model, credential=leg.circuit_credential
    )
    outcome = await operation(provider_for(leg.kind), leg, call)
    context.attempt_ended(
        outcome=outcome.reason if isinstance(outcome, LegFailure) else "answered",
        status=None if isinstance(outcome, LegFailure) else outcome.status_code,
    )
    if isinstance(outcome, LegFailure):
        UPSTREAM_ERRORS.labels(leg.provider, outcome.reason).inc()
        logger.warning("%s failed for %s: %s", leg.provider, context.request_id, outcome.reason)
    return outcome


async def try_leg(
    leg: Leg, call: Call, operation: LegOperation, *, use_circuits: bool
) -> HttpResponseBase | LegFailure:
    """The leg's answer, or why it failed; a pooled leg tries its members as described above.
    ``use_circuits`` False (count_tokens) leaves circuits, cooldowns and limits alone."""
    members = members_of(leg)
    if not members:
        return await _unpooled(leg, call, operation, use_circuits=use_circuits)
    context = call.context
    metadata = context.metadata
    await pool_state.ensure_synced()
    now = time.time()
    retry_times: list[float] = []
    ready: list[ResolvedCredential] = []
    disabled: list[ResolvedCredential] = []
    for member in members:
        if _disabled(member, metadata):
            disabled.append(member)
            continue
        until = pool_state.cooling_until(member.id, now)
        if until is not None:
            retry_times.append(until)
            continue
        ready.append(member)
    strategy = metadata.pool_strategies.get(members[0].provider_key, ROUND_ROBIN)
    candidates = order_members(
        strategy,
        ready,
        turn=pool_state.next_turn(tuple(member.id for member in members)),
        rng=_rng,
        in_flight=pool_state.in_flight,
        tokens=lambda credential_id: pool_state.tokens_this_minute(credential_id, now),
    )
    deferred: list[ResolvedCredential] = []
    has_next_leg = call.has_next_leg
    last_failure: LegFailure | None = None
    while candidates or deferred:
        if candidates:
            member = candidates.pop(0)
            if use_circuits and await circuits.should_skip(_circuit(leg, member)):
                deferred.append(member)  # its circuit is open: tried last, like a leg
                continue
        else:
            member = deferred.pop(0)
        moment = time.time()
        until = pool_state.cooling_until(member.id, moment)
        if until is not None:  # another request of this process cooled it down meanwhile
            retry_times.append(until)
            continue
        hold: limits.Hold | None = None
        if use_circuits:
            taken = await limits.acquire(
                member, request_id=f"{context.request_id}:{member.id}", now_ms=int(moment * 1000)
            )
            if isinstance(taken, limits.Refusal):
                logger.info("pool member #%s is over its %s", member.id, taken.what)
                retry_times.append(taken.retry_at)
                continue
            hold = taken
        call.has_next_leg = has_next_leg or bool(candidates or deferred)
        outcome = await _with_member(leg, member, call, operation, hold, track=use_circuits)
        call.has_next_leg = has_next_leg
        circuit = _circuit(leg, member)
        if not isinstance(outcome, LegFailure):
            if use_circuits and outcome.status_code < 500:
                await circuits.record_success(circuit, started_at=context.started_wall)
            return outcome
        fault = failure_fault(outcome, time.time())
        if not fault.credential_fault:
            if use_circuits and outcome.upstream_failed:
                await circuits.record_failure(
                    circuit, reason=outcome.reason, retry_at=outcome.retry_at
                )
            return outcome
        last_failure = outcome
        if fault.kind is FaultKind.RATE_LIMITED:
            if use_circuits:
                retry_times.append(_cool_down(member, fault, outcome.reason))
        else:
            _disable(member, fault)
    if retry_times:
        return _pool_busy(leg, min(retry_times), len(members))
    if last_failure is not None:
        # Every member refused for good: the last provider's own answer, no circuit change.
        last_failure.upstream_failed = False
        return last_failure
    return _pool_disabled(leg, disabled)


async def _unpooled(
    leg: Leg, call: Call, operation: LegOperation, *, use_circuits: bool
) -> HttpResponseBase | LegFailure:
    circuit = circuit_name(leg.provider, leg.circuit_credential)
    outcome = await attempt(leg, call, operation)
    if isinstance(outcome, LegFailure):
        if use_circuits and outcome.upstream_failed:
            await circuits.record_failure(circuit, reason=outcome.reason, retry_at=outcome.retry_at)
    elif use_circuits and outcome.status_code < 500:
        await circuits.record_success(circuit, started_at=call.context.started_wall)
    return outcome


async def _with_member(
    leg: Leg,
    member: ResolvedCredential,
    call: Call,
    operation: LegOperation,
    hold: limits.Hold | None,
    *,
    track: bool,
) -> HttpResponseBase | LegFailure:
    """One member's attempt, counted in flight from now until the request's usage record."""
    context = call.context
    flight = f"{context.request_id}:{member.id}"
    previous = context.on_record
    if track:
        pool_state.started(member.id, flight, time.time())

        def on_record(provider: str, status: int, usage: Usage) -> None:
            tokens = usage_tokens(usage)
            pool_state.finished(member.id, flight, tokens=tokens, now=time.time())
            if hold is not None:
                hold.release(tokens)
            if previous is not None:
                previous(provider, status, usage)

        context.on_record = on_record
    call.pooled = True
    try:
        outcome = await attempt(replace(leg, credential=member), call, operation)
    except BaseException:
        _end_flight(member, flight, hold, track=track)
        context.on_record = previous
        raise
    finally:
        call.pooled = False
    if isinstance(outcome, LegFailure):
        context.on_record = previous
        _end_flight(member, flight, hold, track=track)
    return outcome


def _end_flight(
    member: ResolvedCredential, flight: str, hold: limits.Hold | None, *, track: bool
) -> None:
    if track:
        pool_state.finished(member.id, flight, tokens=0, now=time.time())
    if hold is not None:
        hold.release(0)


def _cool_down(member: ResolvedCredential, fault: Fault, reason: str) -> float:
    """Cool ``member`` down; returns until when it cools down now (maybe longer than asked)."""
    now = time.time()
    until = fault.retry_at if fault.retry_at is not None else now + _default_cooldown()
    until = min(max(until, now), now + settings.GATEWAY_CIRCUIT_MAX_OPEN_SECONDS)
    if pool_state.extend_cooldown(member.id, until=until, reason=reason):
        logger.warning("pool member #%s cools down for %.0fs (%s)", member.id, until - now, reason)
    return pool_state.cooling_until(member.id, now) or until


def _default_cooldown() -> float:
    return float(settings.GATEWAY_POOL_COOLDOWN_SECONDS)


def _disable(member: ResolvedCredential, fault: Fault) -> None:
    from accounts.services import DISABLED_AUTH, DISABLED_QUOTA

    kind = DISABLED_QUOTA if fault.kind is FaultKind.QUOTA else DISABLED_AUTH
    pool_state.mark_disabled(member.id, reason=f"{kind}: {fault.detail}", at=time.time())
    logger.error("pool member #%s disabled: %s: %s", member.id, kind, fault.detail)
    pool_state.spawn(_disable_in_database(member.id, kind, fault.detail))


async def _disable_in_database(credential_id: int, kind: str, detail: str) -> None:
    from accounts.services import provider_credential_disable_for_fault

    try:
        await sync_to_async(provider_credential_disable_for_fault)(
            credential_id=credential_id, kind=kind, detail=detail
        )
    except Exception as exc:
        # The mark keeps it out of this process's rotation; the next fault tries again.
        logger.error("pool member #%s: cannot record that it is disabled: %s", credential_id, exc)


def _pool_busy(leg: Leg, retry_at: float, size: int) -> LegFailure:
    seconds = max(1, math.ceil(retry_at - time.time()))
    which = "The" if size == 1 else f"Every one of the {size}"
    message = (
        f"{which} {leg.provider} credential{'s' if size > 1 else ''} of this key's pool "
        f"{'is' if size == 1 else 'are'} rate-limited; retry in {seconds} s."
    )
    error = MappedError(
        status=429,
        body=gateway_error(429, "rate_limit_error", message).body,
        headers={"retry-after": str(seconds)},
    )
    return LegFailure(
        reason="pool_rate_limited", error=error, retry_at=retry_at, upstream_failed=False
    )


def _pool_disabled(leg: Leg, disabled: list[ResolvedCredential]) -> LegFailure:
    reasons = {pool_state.member(member.id).disabled_reason for member in disabled}
    detail = "; ".join(sorted(reason for reason in reasons if reason)) or "disabled"
    message = f"Every {leg.provider} credential of this key's pool was disabled: {detail}"
    return LegFailure(
        reason="pool_disabled",
        error=gateway_error(403, "permission_error", message),
        upstream_failed=False,
    )
