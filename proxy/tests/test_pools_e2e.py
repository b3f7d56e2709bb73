"""Key pools end to end: the official openai SDK against the running gateway, three stored
OpenAI keys in one pool, and the fake OpenAI server answering chosen keys with a 429 and
``retry-after``, ``insufficient_quota`` or a 401. Which key each request used is read from the
fake's records (the SHA-256 of the Authorization it saw)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import anthropic
import httpx
import openai
import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential
from accounts.services import (
    credential_pool_set_strategy,
    provider_credential_set,
    provider_credential_set_enabled,
)
from proxy.pools.state import pool_state
from proxy.testing.fake_openai import insufficient_quota, invalid_key, rate_limited
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.testing.fixtures import FakeProviders
from proxy.testing.provider_server import key_sha256
from proxy.tests.conftest import GatewayServer, KeyHolder

KEYS = ("sk-pool-member-one-0001", "sk-pool-member-two-0002", "sk-pool-member-three-03")
BY_HASH = {key_sha256(key): key for key in KEYS}


@pytest.fixture
def pool(
    fake_providers_settings: FakeProviders,
    key_holder: KeyHolder,
) -> dict[str, ProviderCredential]:
    members = {}
    for key in KEYS:
        credential, _ = provider_credential_set(provider="openai", secret=key, add=True)
        members[key] = credential
    invalidate_key_metadata()
    return members


def _client(gateway: GatewayServer, key_holder: KeyHolder) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1",
        api_key=key_holder.plaintext,
        max_retries=0,
        _strict_response_validation=True,
    )


def _ask(client: openai.OpenAI) -> str:
    answer = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    return answer.choices[0].message.content or ""


def _used(providers: FakeProviders, start: int = 0) -> list[str]:
    """The upstream key of each request the fake OpenAI got, in order."""
    return [BY_HASH[r.key_sha256 or ""] for r in providers.openai.requests[start:]]


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_round_robin_spreads_requests_over_every_key(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: object,
    fake_providers_settings: FakeProviders,
) -> None:
    client = _client(gateway_server, key_holder)
    for _ in range(6):
        _ask(client)
    assert Counter(_used(fake_providers_settings)) == {key: 2 for key in KEYS}


def test_weighted_pool_sends_most_requests_to_the_heaviest_key(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    for key, weight in zip(KEYS, (1, 0, 8), strict=True):
        ProviderCredential.objects.filter(pk=pool[key].pk).update(weight=weight)
    credential_pool_set_strategy(provider="openai", strategy="weighted")
    invalidate_key_metadata()
    client = _client(gateway_server, key_holder)
    for _ in range(30):
        _ask(client)
    used = Counter(_used(fake_providers_settings))
    assert used[KEYS[1]] == 0  # a standby, and the others answer
    assert used[KEYS[2]] > used[KEYS[0]]
    assert used[KEYS[2]] >= 18  # 8/9 expected: 26.7 of 30; far below only by a broken draw


def test_a_rate_limited_key_cools_down_until_retry_after_and_another_answers(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    fake = fake_providers_settings.openai
    fake.fail_key(KEYS[0], rate_limited(retry_after=30))
    client = _client(gateway_server, key_holder)
    for _ in range(6):
        assert _ask(client)  # every request is answered
    used = _used(fake_providers_settings)
    assert used.count(KEYS[0]) == 1  # tried once, then left alone while it cools down
    assert set(used) == set(KEYS)
    until = pool_state.cooling_until(pool[KEYS[0]].pk, time.time())
    assert until is not None and 25 < until - time.time() <= 30
    # A later, shorter 429 of the same key would not shorten it (unit-tested); the database
    # keeps the key enabled: a rate limit is not a reason to disable it.
    assert ProviderCredential.objects.get(pk=pool[KEYS[0]].pk).enabled


def test_an_exhausted_quota_disables_the_key_until_an_admin_enables_it(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    fake = fake_providers_settings.openai
    fake.fail_key(KEYS[1], insufficient_quota())
    client = _client(gateway_server, key_holder)
    for _ in range(3):
        assert _ask(client)
    member = ProviderCredential.objects.get(pk=pool[KEYS[1]].pk)
    _wait_for(lambda: not ProviderCredential.objects.get(pk=member.pk).enabled)
    member.refresh_from_db()
    assert member.disabled_reason.startswith("quota exhausted: 429 insufficient_quota")
    assert member.disabled_at is not None
    start = len(fake.requests)
    for _ in range(6):
        assert _ask(client)
    assert KEYS[1] not in _used(fake_providers_settings, start)
    # The admin tops the account up and enables the key: it is back in turn.
    fake.fail_key(KEYS[1], None)
    provider_credential_set_enabled(credential=member, enabled=True)
    start = len(fake.requests)
    for _ in range(6):
        _ask(client)
    assert _used(fake_providers_settings, start).count(KEYS[1]) == 2
    member.refresh_from_db()
    assert (member.disabled_reason, member.disabled_at) == ("", None)


def test_a_refused_key_is_disabled_with_the_providers_reason(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    fake_providers_settings.openai.fail_key(KEYS[2], invalid_key())
    client = _client(gateway_server, key_holder)
    for _ in range(4):
        assert _ask(client)  # the next key answers: the client never sees the 401
    _wait_for(lambda: not ProviderCredential.objects.get(pk=pool[KEYS[2]].pk).enabled)
    reason = ProviderCredential.objects.get(pk=pool[KEYS[2]].pk).disabled_reason
    assert reason.startswith("key refused: 401 invalid_api_key: Incorrect API key")
    assert _used(fake_providers_settings).count(KEYS[2]) == 1


def test_every_key_cooling_down_is_a_429_with_the_earliest_retry(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    fake = fake_providers_settings.openai
    for key, seconds in zip(KEYS, (40, 9, 25), strict=True):
        fake.fail_key(key, rate_limited(retry_after=seconds))
    client = _client(gateway_server, key_holder)
    with pytest.raises(openai.RateLimitError) as raised:
        _ask(client)
    assert sorted(_used(fake_providers_settings)) == sorted(KEYS)  # each key once, no more
    assert 8 <= int(raised.value.response.headers["retry-after"]) <= 9
    # While they cool down, requests get the 429 without reaching the provider.
    with pytest.raises(openai.RateLimitError) as again:
        _ask(client)
    assert len(fake.requests) == 3
    assert int(again.value.response.headers["retry-after"]) <= 9
    assert "rate-limited" in again.value.message


def test_streams_use_the_pool_too(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: object,
    fake_providers_settings: FakeProviders,
) -> None:
    fake_providers_settings.openai.fail_key(KEYS[0], rate_limited(retry_after=30))
    client = _client(gateway_server, key_holder)
    for _ in range(3):
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert chunks
    assert _used(fake_providers_settings).count(KEYS[0]) == 1


def test_a_clients_own_anthropic_key_is_never_disabled(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: FakeUpstream,
) -> None:
    stored, _ = provider_credential_set(provider="anthropic", secret="sk-ant-stored-0001")
    invalidate_key_metadata()
    fake_upstream_settings.add_fault("anthropic", HttpError(status=401))
    client = anthropic.Anthropic(
        base_url=gateway_server.key_url(key_holder.plaintext),
        api_key="sk-ant-client-own-key",
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    asyncio.run(asyncio.sleep(0.1))
    stored.refresh_from_db()
    assert stored.enabled and not stored.disabled_reason
    assert pool_state.snapshot(time.time()) == {}


def test_a_stored_anthropic_key_refused_is_disabled_and_bedrock_answers(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: FakeUpstream,
    bedrock_credential: None,
) -> None:
    stored, _ = provider_credential_set(provider="anthropic", secret="sk-ant-stored-0001")
    invalidate_key_metadata()
    fake_upstream_settings.add_fault(
        "anthropic",
        HttpError(
            status=400,
            error_type="invalid_request_error",
            message="Your credit balance is too low to access the Anthropic API.",
        ),
    )
    # No client credential: the stored key is the one sent (and the one refused).
    response = httpx.post(
        f"{gateway_server.key_url(key_holder.plaintext)}/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "bedrock"
    assert response.headers["x-gateway-fallback-reason"] == "anthropic_400"
    _wait_for(lambda: not ProviderCredential.objects.get(pk=stored.pk).enabled)
    stored.refresh_from_db()
    assert stored.disabled_reason.startswith("quota exhausted: 400")


def test_a_member_over_its_own_rpm_limit_leaves_the_rest_to_the_others(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    from governance.counters import counters

    counters.reset()
    ProviderCredential.objects.filter(pk=pool[KEYS[0]].pk).update(rpm_limit=2)
    ProviderCredential.objects.exclude(pk=pool[KEYS[0]].pk).update(weight=0)
    ProviderCredential.objects.filter(pk=pool[KEYS[1]].pk).update(weight=1)
    invalidate_key_metadata()
    if time.time() % 60 > 55:  # the whole test inside one minute window
        time.sleep(60 - time.time() % 60 + 0.2)
    client = _client(gateway_server, key_holder)
    for _ in range(6):
        assert _ask(client)
    used = Counter(_used(fake_providers_settings))
    assert used[KEYS[0]] == 2
    assert used[KEYS[1]] == 4
    counters.reset()


def test_the_probe_enables_quota_disabled_keys_the_provider_answers_again(
    pool: dict[str, ProviderCredential],
    fake_providers_settings: FakeProviders,
) -> None:
    from accounts.services import provider_credential_disable_for_fault
    from proxy.tasks import probe_quota_disabled_credentials

    quota, refused, _ = (pool[key] for key in KEYS)
    provider_credential_disable_for_fault(
        credential_id=quota.pk, kind="quota exhausted", detail="429 insufficient_quota"
    )
    provider_credential_disable_for_fault(
        credential_id=refused.pk, kind="key refused", detail="401 invalid_api_key"
    )
    fake = fake_providers_settings.openai
    fake.fail_key(KEYS[0], invalid_key())  # still out: the models list fails too
    assert probe_quota_disabled_credentials() == []
    assert not ProviderCredential.objects.get(pk=quota.pk).enabled
    fake.fail_key(KEYS[0], None)
    assert probe_quota_disabled_credentials() == [quota.pk]
    quota.refresh_from_db()
    assert (quota.enabled, quota.disabled_reason) == (True, "")
    # A refused key is never probed: it waits for an admin.
    assert [r.key_sha256 for r in fake.requests_to("models")] == [key_sha256(KEYS[0])] * 2
    assert not ProviderCredential.objects.get(pk=refused.pk).enabled
