"""Redis away during load: the gateway keeps serving from in-process state and records usage;
when Redis returns, shared state (circuits, key invalidation) works again.

Each test runs its own redis-server (``PrivateRedis``) and points ``settings.REDIS_URL`` at it;
``gateway_project.redis`` keys its cached clients by URL, so the gateway follows the change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import OperationalError

from accounts import selectors as account_selectors
from accounts.keycache import GENERATION_KEY, invalidate_key_metadata
from accounts.models import AccessKey
from accounts.services import provider_credential_set
from proxy.circuit import CircuitRegistry, circuit_name
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import (
    LoadRunner,
    Outcome,
    PrivateRedis,
    assert_error_response,
    report_counts,
    run_in_gateway,
)

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_KEY = "sk-ant-client-key"
CLIENT_HEADERS = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


@pytest.fixture
def redis_url(settings: Any) -> Iterator[PrivateRedis]:
    """A private redis-server, the gateway's REDIS_URL while the test runs."""
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url()
    yield server
    server.kill()


def _load(gateway: GatewayServer, key: str) -> LoadRunner:
    return LoadRunner(
        url=gateway.key_url(key) + "/v1/messages", body=BODY, headers=CLIENT_HEADERS
    ).start()


def _assert_all_served(outcomes: list[Outcome]) -> None:
    failures = [outcome for outcome in outcomes if outcome.status != 200]
    assert not failures, failures[:3]


def _assert_recorded(outcomes: list[Outcome], recorded_events: Any) -> int:
    events = recorded_events()
    served = {outcome.request_id for outcome in outcomes}
    assert len(served) == len(outcomes)
    assert len(events) == len(outcomes)
    assert {event.request_id for event in events} == served
    return len(events)


def _eventually(probe: Any, *, timeout: float = 6.0) -> Any:
    """Call ``probe`` until it returns something truthy (shared state syncs once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_redis_killed_during_load_then_back(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    redis_url: PrivateRedis,
    recorded_events: Any,
    capsys: pytest.CaptureFixture[str],
    settings: Any,
) -> None:
    load = _load(gateway_server, key_holder.plaintext)
    load.wait_for(40)
    redis_url.kill()
    load.wait_for(load.done + 120)
    redis_url.start()
    load.wait_for(load.done + 40)
    outcomes = load.stop()

    _assert_all_served(outcomes)
    recorded = _assert_recorded(outcomes, recorded_events)
    report_counts(
        capsys,
        "Redis killed during load",
        requests_served=len(outcomes),
        events_recorded=recorded,
        events_lost=len(outcomes) - recorded,
    )

    # Shared circuit state resumes, both ways. Anthropic keeps failing here (below the
    # threshold), so no success of this worker's own can close what the other one opened.
    settings.GATEWAY_CIRCUIT_FAILURE_THRESHOLD = 1000
    fake.set_default_fault("anthropic", HttpError(status=500))
    other_worker = CircuitRegistry()
    name = circuit_name("anthropic", CLIENT_KEY)
    run_in_gateway(
        other_worker.record_failure(name, reason="anthropic_429", retry_at=time.time() + 60)
    )

    def routed_to_bedrock() -> bool:
        response = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json=BODY,
            headers=CLIENT_HEADERS,
        )
        assert response.status_code == 200
        return response.headers.get("x-gateway-fallback-reason") == "circuit_open"

    assert _eventually(routed_to_bedrock)

    async def seen_by(registry: CircuitRegistry) -> str:
        await registry.should_skip(name)
        await registry.wait_synced()
        return await registry.should_skip(name)

    third_worker = CircuitRegistry()
    assert run_in_gateway(seen_by(third_worker)) == "circuit_open"
    fake.set_default_fault("anthropic", None)

    # A revoke made by another process (database row + shared generation) reaches this one.
    AccessKey.objects.filter(pk=key_holder.key_id).update(status="revoked")
    redis_url.client().incr(GENERATION_KEY)

    def refused() -> bool:
        response = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json=BODY,
            headers=CLIENT_HEADERS,
        )
        return response.status_code == 401

    assert _eventually(refused)


def test_frozen_redis_holds_no_request(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    redis_url: PrivateRedis,
    recorded_events: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Redis that accepts connections but never answers (stopped process) is worse than a
    dead one: every wait on it lasts a socket timeout. Valid keys must not wait on it."""
    load = _load(gateway_server, key_holder.plaintext)
    load.wait_for(20)
    redis_url.freeze()
    try:
        load.wait_for(load.done + 100)
        # Bad keys consult the shared throttle: they wait out its timeout, then get their 401.
        bad = httpx.post(
            gateway_server.key_url("gw_zzzzzzzz_" + "q" * 43) + "/v1/messages",
            json=BODY,
            timeout=10,
        )
        assert_error_response(bad, 401, "authentication_error")
    finally:
        redis_url.thaw()
    load.wait_for(load.done + 20)
    outcomes = load.stop()
    _assert_all_served(outcomes)
    recorded = _assert_recorded(outcomes, recorded_events)
    report_counts(
        capsys,
        "Redis frozen during load",
        requests_served=len(outcomes),
        events_recorded=recorded,
        events_lost=len(outcomes) - recorded,
    )


def test_admin_changes_while_redis_is_down_apply_here_and_later_everywhere(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    redis_url: PrivateRedis,
) -> None:
    url = gateway_server.key_url(key_holder.plaintext) + "/v1/messages"
    assert httpx.post(url, json=BODY).status_code == 200  # no credential: the fake lets it by
    redis_url.kill()
    # The invalidation cannot be shared, but the change is saved and this process sees it.
    provider_credential_set(
        provider="anthropic", secret="sk-ant-stored-while-redis-down", user=key_holder.user
    )
    assert httpx.post(url, json=BODY).status_code == 200
    assert fake.last_request.header("x-api-key") == "sk-ant-stored-while-redis-down"

    redis_url.start()
    invalidate_key_metadata()
    assert redis_url.client().get(GENERATION_KEY) == b"1"


def _database_down(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("connection refused (simulated)")


def test_a_redis_restart_during_a_database_outage_keeps_cached_keys_working(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    redis_url: PrivateRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = gateway_server.key_url(key_holder.plaintext) + "/v1/messages"
    invalidate_key_metadata()  # a shared generation exists, and this process has adopted it
    assert httpx.post(url, json=BODY, headers=CLIENT_HEADERS).status_code == 200

    monkeypatch.setattr(account_selectors, "key_metadata_load", _database_down)
    redis_url.kill()
    redis_url.start()  # empty: the generation is gone
    statuses = []
    deadline = time.monotonic() + 3  # the generation is checked once a second
    while time.monotonic() < deadline:
        statuses.append(httpx.post(url, json=BODY, headers=CLIENT_HEADERS, timeout=10).status_code)
        time.sleep(0.1)
    assert set(statuses) == {200}, statuses
