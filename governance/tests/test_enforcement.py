"""Limits and budgets through the proxy, on whatever this run is configured with (the embedded
default, or PostgreSQL and Redis): 429s in the client's format with retry-after, x-ratelimit
headers, allowed models, reservations settled with the actual usage, seeds from usage tables, and
no database query on the warm path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.test import Client

from accounts.keycache import key_cache
from accounts.models import AccessKey
from governance import services
from governance.counters import counters
from governance.enforcement import budget_key, policies
from governance.models import Budget
from governance.selectors import budget_rule
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay
from proxy.tests.conftest import GatewayServer, KeyHolder
from usage.models import Bucket, Price, UsageAggregate

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


@pytest.fixture
def anthropic_credential(key_holder: KeyHolder) -> None:
    """OpenAI-surface clients send no Anthropic credential: the gateway's own is used."""
    from accounts.services import provider_credential_set

    provider_credential_set(provider="anthropic", secret="sk-ant-stored-0123456789")


def _post(
    gateway: GatewayServer, key: str, body: Any = BODY, path: str = "/v1/messages"
) -> httpx.Response:
    return httpx.post(gateway.key_url(key) + path, json=body, headers=CLIENT_HEADERS, timeout=10)


def _chat(gateway: GatewayServer, key: str, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}", **CLIENT_HEADERS},
        timeout=10,
    )


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _away_from_minute_edge() -> None:
    """Fixed windows: a test counting within one minute must not straddle two."""
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def _limit(holder: KeyHolder, **values: Any) -> None:
    services.rate_limit_create(scope="access_key", access_key_id=holder.key_id, **values)


def test_requests_per_minute_admits_the_limit_then_answers_429(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    _limit(key_holder, requests_per_minute=3)
    _away_from_minute_edge()
    answers = [_post(gateway_server, key_holder.plaintext) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    first = answers[0].headers
    assert first["x-ratelimit-limit-requests"] == "3"
    assert first["x-ratelimit-remaining-requests"] == "2"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = answers[3]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake.requests) == 3


def test_a_users_limit_covers_all_of_its_keys(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    from accounts.services import access_key_create

    _, second = access_key_create(user=key_holder.user, label="second")
    services.rate_limit_create(scope="user", user_id=key_holder.user.pk, requests_per_minute=2)
    _away_from_minute_edge()
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    assert _post(gateway_server, second).status_code == 200
    refused = _post(gateway_server, second)
    assert refused.status_code == 429
    assert "this user" in refused.json()["error"]["message"]


def test_openai_clients_get_openai_shaped_429s(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    anthropic_credential: None,
) -> None:
    _limit(key_holder, requests_per_minute=1)
    _away_from_minute_edge()
    assert _chat(gateway_server, key_holder.plaintext).status_code == 200
    refused = _chat(gateway_server, key_holder.plaintext)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in refused.headers


def test_concurrent_requests_beyond_the_limit_are_refused_and_slots_come_back(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    import concurrent.futures

    _limit(key_holder, concurrent_requests=1)
    fake.add_fault("anthropic", Delay(delay=0.8))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_post, gateway_server, key_holder.plaintext)
        _wait_until(lambda: len(fake.requests) == 1)
        second = _post(gateway_server, key_holder.plaintext)
        assert slow.result().status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert "concurrent" in second.json()["error"]["message"]
    _wait_until(lambda: _post(gateway_server, key_holder.plaintext).status_code == 200)


def test_tokens_per_minute_is_corrected_by_actual_usage(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    # The fake reports 11 + 3 tokens per request whatever the estimate; 30 per minute admits
    # the third request (28 used after two, window not empty) only if 28 + estimate <= 30.
    _limit(key_holder, tokens_per_minute=30)
    _away_from_minute_edge()
    first = _post(gateway_server, key_holder.plaintext)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    _wait_until(lambda: _tpm_used(key_holder) == 14)
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    _wait_until(lambda: _tpm_used(key_holder) == 28)
    refused = _post(gateway_server, key_holder.plaintext)
    assert refused.status_code == 429
    assert "tokens per minute" in refused.json()["error"]["message"]


def _tpm_used(holder: KeyHolder) -> int:
    from governance.counters import WINDOW, Check
    from governance.enforcement import window_key
    from governance.periods import minute_window
    from governance.policy import LimitRule

    start, end = minute_window(int(time.time() * 1000))
    key = window_key("tpm", LimitRule(scope="access_key", target_id=holder.key_id), start)
    # A zero-amount admission reads the window without changing it.
    import asyncio

    outcome, _ = asyncio.run(counters.admit([Check(WINDOW, key, 10**12, 0, end)], 0))
    return outcome.used[0]


def test_a_model_outside_the_allowed_list_is_refused_with_403(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    _limit(key_holder, allowed_models=["claude-haiku-*", "anthropic/claude-sonnet-4-6"])
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    refused = _post(gateway_server, key_holder.plaintext, {**BODY, "model": "claude-opus-4-1"})
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert "claude-opus-4-1" in refused.json()["error"]["message"]
    assert len(fake.requests) == 1


def _price() -> None:
    Price.objects.create(
        provider="anthropic",
        model=MODEL,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_per_mtok=Decimal("3.75"),
    )


def test_a_token_budget_reserves_the_maximum_and_refuses_once_spent(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    anthropic_credential: None,
) -> None:
    budget = services.budget_create(
        scope="access_key",
        access_key_id=key_holder.key_id,
        period="day",
        limit_tokens=20,
        name="Laptop daily",
    )
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    # 14 spent < 20: admitted; then 28 >= 20: refused, naming the budget and its reset.
    _wait_until(lambda: _budget_state(budget, "tokens") == (14, 0))
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    _wait_until(lambda: _budget_state(budget, "tokens") == (28, 0))
    refused = _post(gateway_server, key_holder.plaintext)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "'Laptop daily'" in error["message"]
    assert "28 of 20 tokens" in error["message"]
    assert "resets at" in error["message"]
    assert int(refused.headers["retry-after"]) <= 86_400
    openai = _chat(gateway_server, key_holder.plaintext)
    assert openai.status_code == 429
    assert openai.json()["error"]["type"] == "insufficient_quota"
    assert openai.json()["error"]["code"] == "insufficient_quota"


def _budget_state(budget: Budget, unit: str) -> tuple[int, int] | None:
    from governance.enforcement import budget_zone
    from governance.periods import period_bounds

    rule = budget_rule(budget)
    start, _ = period_bounds(rule.period, datetime.now(UTC), budget_zone())
    return counters.budget_state_sync(budget_key(rule, unit, start))


def test_a_usd_budget_is_seeded_from_the_usage_aggregates(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    _price()
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    UsageAggregate.objects.create(
        bucket=Bucket.HOUR,
        bucket_start=hour,
        user_id=key_holder.user.pk,
        access_key_id=key_holder.key_id,
        provider="anthropic",
        model=MODEL,
        requests=3,
        input_tokens=1000,
        cost_usd=Decimal("4.99995"),
    )
    # An older month's spend is another period.
    UsageAggregate.objects.create(
        bucket=Bucket.HOUR,
        bucket_start=hour - timedelta(days=40),
        user_id=key_holder.user.pk,
        access_key_id=key_holder.key_id,
        provider="anthropic",
        model=MODEL,
        cost_usd=Decimal("100"),
    )
    budget = services.budget_create(
        scope="user", user_id=key_holder.user.pk, period="month", limit_usd=Decimal("5")
    )
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    # 4.99995 < 5 admitted it; then 4.99995 + 11 × $3/M + 3 × $15/M is over.
    _wait_until(lambda: _budget_state(budget, "usd") == (499_995_000 + 3_300 + 4_500, 0))
    refused = _post(gateway_server, key_holder.plaintext)
    assert refused.status_code == 429
    assert "$5.00 of $5.00" in refused.json()["error"]["message"]


def test_a_budget_of_another_provider_does_not_apply(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    services.budget_create(scope="global", provider="openai", period="day", limit_tokens=1)
    for _ in range(2):
        assert _post(gateway_server, key_holder.plaintext).status_code == 200


def test_a_change_applies_at_once_and_the_warm_path_makes_no_query(
    key_holder: KeyHolder, fake: FakeUpstream, django_assert_num_queries: Any
) -> None:
    client = Client()
    url = f"/ak/{key_holder.plaintext}/v1/messages"
    headers = {"HTTP_X_API_KEY": "sk-ant-client-key"}

    def post() -> Any:
        return client.post(url, data=json.dumps(BODY), content_type="application/json", **headers)

    assert post().status_code == 200
    _limit(key_holder, requests_per_minute=1000, concurrent_requests=5, tokens_per_minute=10**6)
    services.budget_create(scope="global", period="week", limit_tokens=10**9)
    _away_from_minute_edge()
    cold = post()
    assert cold.status_code == 200
    assert cold["x-ratelimit-limit-requests"] == "1000"
    with django_assert_num_queries(0):
        warm = post()
        assert warm.status_code == 200
        assert warm["x-ratelimit-remaining-requests"] == "998"
    limit = AccessKey.objects.get(pk=key_holder.key_id).rate_limit
    services.rate_limit_update(limit=limit, requests_per_minute=2)
    assert post().status_code == 429
    assert policies is not None and key_cache is not None


def test_a_budget_survives_a_restart_or_a_redis_flush(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, recorded_events: Any
) -> None:
    budget = services.budget_create(
        scope="access_key", access_key_id=key_holder.key_id, period="week", limit_tokens=28
    )
    for _ in range(2):
        assert _post(gateway_server, key_holder.plaintext).status_code == 200
    _wait_until(lambda: _budget_state(budget, "tokens") == (28, 0))
    assert len(recorded_events()) == 2  # written, not rolled up: pending events
    # A restart (empty process memory) or a Redis flush forgets every counter...
    counters.reset()
    policies.clear()
    assert _budget_state(budget, "tokens") is None
    # ...and the period is seeded again from the usage tables: still spent.
    refused = _post(gateway_server, key_holder.plaintext)
    assert refused.status_code == 429
    assert "28 of 28 tokens" in refused.json()["error"]["message"]
