"""Key pools, unit by unit: error classification across providers, member order per strategy
(weighted draws within statistical bounds), cooldown arithmetic (a later 429 extends, never
shortens), and the shared state's merge rules."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from django.conf import settings

from gateway_project import redis as shared_redis
from proxy.pools.classify import Fault, FaultKind, classify, duration_seconds, retry_at
from proxy.pools.state import COOLDOWNS_KEY, PoolState, clear_shared
from proxy.pools.strategies import (
    LEAST_IN_FLIGHT,
    LEAST_TOKENS,
    ROUND_ROBIN,
    WEIGHTED,
    order_members,
)

NOW = 1_800_000_000.0


def _openai(message: str, error_type: str, code: str | None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


def _anthropic(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


def _google(code: int, status: str, message: str, details: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"error": {"code": code, "status": status, "message": message, "details": details}}
    ).encode()


def _quota_failure(quota_id: str) -> dict[str, object]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generativelanguage.googleapis.com/x", "quotaId": quota_id}],
    }


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}

CASES: list[tuple[str, int, dict[str, str], bytes, FaultKind]] = [
    (
        "openai insufficient_quota",
        429,
        {},
        _openai(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        FaultKind.QUOTA,
    ),
    (
        "openai rate limit",
        429,
        {"retry-after": "3"},
        _openai("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        FaultKind.RATE_LIMITED,
    ),
    (
        "openai free-tier rate limit mentioning billing",
        429,
        {},
        _openai(
            "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000. You can "
            "increase your rate limit by adding a payment method at "
            "https://platform.openai.com/account/billing.",
            "tokens",
            "rate_limit_exceeded",
        ),
        FaultKind.RATE_LIMITED,
    ),
    (
        "openai invalid key",
        401,
        {},
        _openai("Incorrect API key provided: sk-***", "invalid_request_error", "invalid_api_key"),
        FaultKind.AUTH,
    ),
    (
        "openai deactivated account",
        401,
        {},
        _openai("This account is deactivated.", "invalid_request_error", "account_deactivated"),
        FaultKind.AUTH,
    ),
    (
        "openai unsupported region (403, not the key)",
        403,
        {},
        _openai(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        FaultKind.NONE,
    ),
    (
        "openai billing hard limit (400)",
        400,
        {},
        _openai(
            "Billing hard limit has been reached",
            "invalid_request_error",
            "billing_hard_limit_reached",
        ),
        FaultKind.QUOTA,
    ),
    (
        "openai bad parameter",
        400,
        {},
        _openai("Invalid value for 'temperature'", "invalid_request_error", None),
        FaultKind.NONE,
    ),
    (
        "openai unknown model",
        404,
        {},
        _openai("The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"),
        FaultKind.NONE,
    ),
    (
        "anthropic credit balance",
        400,
        {},
        _anthropic(
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        FaultKind.QUOTA,
    ),
    (
        "anthropic rate limit",
        429,
        {"retry-after": "12"},
        _anthropic(
            "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
        ),
        FaultKind.RATE_LIMITED,
    ),
    (
        "anthropic invalid key",
        401,
        {},
        _anthropic("authentication_error", "invalid x-api-key"),
        FaultKind.AUTH,
    ),
    (
        "anthropic key without permission",
        403,
        {},
        _anthropic(
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        FaultKind.AUTH,
    ),
    (
        "anthropic overloaded",
        529,
        {},
        _anthropic("overloaded_error", "Overloaded"),
        FaultKind.SERVER,
    ),
    (
        "anthropic bad request",
        400,
        {},
        _anthropic("invalid_request_error", "max_tokens: Field required"),
        FaultKind.NONE,
    ),
    (
        "gemini per-minute quota",
        429,
        {},
        _google(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [_quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), RETRY_INFO],
        ),
        FaultKind.RATE_LIMITED,
    ),
    (
        "gemini per-day quota",
        429,
        {},
        _google(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [_quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), RETRY_INFO],
        ),
        FaultKind.QUOTA,
    ),
    (
        "gemini bare resource exhausted",
        429,
        {},
        _google(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", []),
        FaultKind.RATE_LIMITED,
    ),
    (
        "gemini invalid key (a 400)",
        400,
        {},
        _google(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        ),
        FaultKind.AUTH,
    ),
    (
        "gemini bad argument",
        400,
        {},
        _google(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", []),
        FaultKind.NONE,
    ),
    (
        "openrouter payment required",
        402,
        {},
        _openai("Insufficient credits", "", "402"),
        FaultKind.QUOTA,
    ),
    ("generic 503 without a body", 503, {}, b"", FaultKind.SERVER),
    ("generic 401 html", 401, {}, b"<html>nope</html>", FaultKind.AUTH),
    ("generic 429 without a body", 429, {}, b"", FaultKind.RATE_LIMITED),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_classification(status: int, headers: dict[str, str], body: bytes, kind: FaultKind) -> None:
    fault = classify(status, headers, body, now=NOW)
    assert fault.kind is kind
    assert str(status) in fault.detail
    assert fault.disables == (kind in (FaultKind.QUOTA, FaultKind.AUTH))


def test_a_parsed_stream_error_classifies_like_its_bytes() -> None:
    body = json.loads(CASES[0][3])
    assert classify(429, {}, body, now=NOW).kind is FaultKind.QUOTA
    assert classify(429, {}, [json.loads(CASES[16][3])], now=NOW).kind is FaultKind.QUOTA


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, NOW + 7),
        ({"retry-after-ms": "1500", "retry-after": "9"}, NOW + 1.5),
        (
            {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)},
            NOW + 90,
        ),
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "6m0s",
                "x-ratelimit-remaining-tokens": "5000",
                "x-ratelimit-reset-tokens": "20ms",
            },
            NOW + 360,
        ),
        (
            {
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-reset": datetime.fromtimestamp(
                    NOW + 42, UTC
                ).isoformat(),
                "anthropic-ratelimit-requests-remaining": "10",
                "anthropic-ratelimit-requests-reset": datetime.fromtimestamp(
                    NOW + 5, UTC
                ).isoformat(),
            },
            NOW + 42,
        ),
        ({"anthropic-ratelimit-unified-5h-reset": str(int(NOW + 600))}, NOW + 600),
        ({}, None),
    ],
    ids=["seconds", "ms-first", "http-date", "openai-reset", "anthropic-reset", "unified", "none"],
)
def test_retry_time_from_headers(headers: dict[str, str], expected: float | None) -> None:
    got = retry_at(headers, now=NOW)
    assert got == (pytest.approx(expected, abs=1) if expected is not None else None)


def test_gemini_retry_info_names_the_retry_time() -> None:
    fault = classify(429, {}, CASES[15][3], now=NOW)
    assert fault == Fault(FaultKind.RATE_LIMITED, fault.detail, NOW + 37)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("20ms", 0.02), ("abc", None), ("", None)],
)
def test_openai_durations(text: str, seconds: float | None) -> None:
    assert duration_seconds(text) == seconds


# --- strategies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    id: int
    weight: int = 1


def _order(strategy: str, members: list[_Member], **kwargs: object) -> list[int]:
    options: dict[str, object] = {
        "turn": 0,
        "rng": random.Random(7),
        "in_flight": lambda _id: 0,
        "tokens": lambda _id: 0,
    }
    options.update(kwargs)
    return [m.id for m in order_members(strategy, members, **options)]  # type: ignore[arg-type]


def test_round_robin_takes_members_in_turn_and_keeps_the_rest_for_failover() -> None:
    members = [_Member(1), _Member(2), _Member(3)]
    firsts = [_order(ROUND_ROBIN, members, turn=turn)[0] for turn in range(6)]
    assert firsts == [1, 2, 3, 1, 2, 3]
    assert _order(ROUND_ROBIN, members, turn=1) == [2, 3, 1]


def test_weighted_draw_follows_the_weights_within_statistical_bounds() -> None:
    members = [_Member(1, 1), _Member(2, 2), _Member(3, 7)]
    rng = random.Random(2024)
    draws = 20_000
    counts = Counter(_order(WEIGHTED, members, rng=rng)[0] for _ in range(draws))
    for member in members:
        expected = draws * member.weight / 10
        # Five standard deviations of a binomial count: a real bias fails, chance does not.
        sigma = (draws * (member.weight / 10) * (1 - member.weight / 10)) ** 0.5
        assert abs(counts[member.id] - expected) < 5 * sigma, (member, counts)
    # Every order names each member once.
    assert sorted(_order(WEIGHTED, members, rng=rng)) == [1, 2, 3]


def test_standbys_of_weight_zero_come_after_every_weighted_member() -> None:
    members = [_Member(1, 0), _Member(2, 1), _Member(3, 5)]
    for strategy in (ROUND_ROBIN, WEIGHTED, LEAST_IN_FLIGHT, LEAST_TOKENS):
        for turn in range(4):
            assert _order(strategy, members, turn=turn)[-1] == 1
    rng = random.Random(1)
    assert all(_order(WEIGHTED, members, rng=rng)[0] != 1 for _ in range(2000))


def test_least_in_flight_and_least_tokens_prefer_the_idlest_member() -> None:
    members = [_Member(1), _Member(2), _Member(3)]
    busy = {1: 4, 2: 0, 3: 2}
    assert _order(LEAST_IN_FLIGHT, members, in_flight=busy.__getitem__) == [2, 3, 1]
    used = {1: 100, 2: 9000, 3: 50}
    assert _order(LEAST_TOKENS, members, tokens=used.__getitem__) == [3, 1, 2]
    # Ties go in turn, so equal members share the load.
    firsts = {_order(LEAST_IN_FLIGHT, members, turn=turn)[0] for turn in range(3)}
    assert firsts == {1, 2, 3}


# --- cooldowns and shared state -----------------------------------------------------------------


def test_a_later_429_extends_a_cooldown_and_never_shortens_it() -> None:
    state = PoolState()
    assert state.extend_cooldown(5, until=NOW + 30, reason="openai_429")
    assert state.cooling_until(5, NOW) == NOW + 30
    assert not state.extend_cooldown(5, until=NOW + 10, reason="openai_429")
    assert state.cooling_until(5, NOW) == NOW + 30
    assert state.extend_cooldown(5, until=NOW + 60, reason="openai_429")
    assert state.cooling_until(5, NOW + 59) == NOW + 60
    assert state.cooling_until(5, NOW + 60) is None
    assert state.cooling_until(6, NOW) is None


def test_shared_state_merges_by_the_same_rules() -> None:
    state = PoolState()
    state.extend_cooldown(1, until=NOW + 50, reason="mine")
    state._adopt(
        {b"1": f"{NOW + 20}|theirs".encode(), b"2": f"{NOW + 40}|theirs".encode()},
        {b"3": json.dumps({"at": NOW - 5, "reason": "quota exhausted: x"}).encode()},
        {b"r:1": b"4", b"t:1": b"900"},
        {b"1:other-process": f"3|{int(NOW * 1000)}".encode(), b"2:gone": b"9|0"},
        now=NOW,
        minute=int(NOW // 60),
        now_ms=int(NOW * 1000),
    )
    assert state.cooling_until(1, NOW) == NOW + 50  # the shorter shared one changes nothing
    assert state.cooling_until(2, NOW) == NOW + 40
    assert state.disabled_since(3) == NOW - 5
    assert state.tokens_this_minute(1, NOW) == 900
    assert state.in_flight(1) == 3  # another live process's requests
    assert state.in_flight(2) == 0  # a process that stopped reporting is gone


def test_use_is_counted_per_minute() -> None:
    state = PoolState()
    state.started(1, "a", NOW)
    state.started(1, "b", NOW)
    assert state.in_flight(1) == 2
    state.finished(1, "a", tokens=120, now=NOW)
    assert (state.in_flight(1), state.tokens_this_minute(1, NOW)) == (1, 120)
    assert state.requests_this_minute(1, NOW) == 2
    assert state.tokens_this_minute(1, NOW + 60) == 0


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_shared_cooldowns_only_grow_and_reach_another_process() -> None:
    """Two PoolStates stand for two worker processes sharing one Redis."""

    async def scenario() -> tuple[float | None, float | None, dict[bytes, bytes]]:
        one, other = PoolState(), PoolState()
        now = time.time()
        one.extend_cooldown(4242, until=now + 60, reason="openai_429")
        await one.wait_idle()
        # The other process had only seen a shorter 429: its publication must not shorten it.
        other.extend_cooldown(4242, until=now + 5, reason="openai_429")
        await other.wait_idle()
        await other.ensure_synced()
        stored = shared_redis.sync_client().hgetall(COOLDOWNS_KEY)  # type: ignore[union-attr]
        fresh = PoolState()
        await fresh.ensure_synced()
        return other.cooling_until(4242, now), fresh.cooling_until(4242, now), stored

    clear_shared()
    try:
        other_sees, fresh_sees, stored = asyncio.run(scenario())
    finally:
        clear_shared()
    assert other_sees == fresh_sees
    assert fresh_sees is not None and fresh_sees - time.time() > 55
    assert stored[b"4242"].decode().endswith("|openai_429")
