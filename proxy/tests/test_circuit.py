"""The circuit breaker: opening, retry-after, half-open probe, sharing through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from email.utils import formatdate
from unittest import mock

import pytest
from django.test import override_settings

from proxy import circuit as circuit_module
from proxy.circuit import CircuitRegistry, circuit_name, retry_at_from_headers


@pytest.fixture
def clock() -> Iterator[list[float]]:
    now = [1_800_000_000.0]
    with mock.patch.object(circuit_module.time, "time", lambda: now[0]):
        yield now


@pytest.fixture
def registry() -> CircuitRegistry:
    return CircuitRegistry()


@pytest.fixture
def c() -> str:
    """A circuit name of this test alone (state may be shared through Redis)."""
    return f"test-{time.monotonic_ns()}"


def test_circuit_names_never_contain_the_credential() -> None:
    name = circuit_name("anthropic", "sk-ant-api03-secret-value")
    assert name.startswith("anthropic:")
    assert "secret" not in name
    assert circuit_name("anthropic", "a") != circuit_name("anthropic", "b")
    assert circuit_name("anthropic", "") == "anthropic:none"


@override_settings(GATEWAY_CIRCUIT_FAILURE_THRESHOLD=3, GATEWAY_CIRCUIT_COOLDOWN_SECONDS=30)
async def test_opens_after_threshold_failures_in_window(
    registry: CircuitRegistry, clock: list[float], c: str
) -> None:
    for _ in range(2):
        await registry.record_failure(c, reason="anthropic_529", retry_at=None)
        assert await registry.should_skip(c) == ""
    await registry.record_failure(c, reason="anthropic_529", retry_at=None)
    assert await registry.should_skip(c) == "circuit_open"
    snapshot = registry.snapshot()[0]
    assert snapshot["state"] == "open" and snapshot["reason"] == "anthropic_529"


@override_settings(GATEWAY_CIRCUIT_FAILURE_THRESHOLD=3, GATEWAY_CIRCUIT_WINDOW_SECONDS=10)
async def test_failures_outside_the_window_do_not_count(
    registry: CircuitRegistry, clock: list[float], c: str
) -> None:
    for _ in range(2):
        await registry.record_failure(c, reason="anthropic_500", retry_at=None)
    clock[0] += 11
    await registry.record_failure(c, reason="anthropic_500", retry_at=None)
    assert await registry.should_skip(c) == ""


async def test_a_429_with_retry_after_opens_at_once_until_then(
    registry: CircuitRegistry, clock: list[float], c: str
) -> None:
    await registry.record_failure(c, reason="anthropic_429", retry_at=clock[0] + 120)
    assert await registry.should_skip(c) == "circuit_open"
    clock[0] += 119
    assert await registry.should_skip(c) == "circuit_open"
    clock[0] += 2
    # Half-open: exactly one probe goes to Anthropic, the others keep avoiding it.
    assert await registry.should_skip(c) == ""
    assert await registry.should_skip(c) == "circuit_open"
    await registry.record_success(c, started_at=clock[0])
    assert await registry.should_skip(c) == ""
    assert registry.snapshot()[0]["state"] == "closed"


@override_settings(GATEWAY_CIRCUIT_COOLDOWN_SECONDS=30)
async def test_a_failed_probe_opens_the_circuit_again(
    registry: CircuitRegistry, clock: list[float], c: str
) -> None:
    await registry.record_failure(c, reason="anthropic_429", retry_at=clock[0] + 5)
    clock[0] += 6
    assert await registry.should_skip(c) == ""  # the probe
    await registry.record_failure(c, reason="anthropic_529", retry_at=None)
    assert await registry.should_skip(c) == "circuit_open"
    clock[0] += 29
    assert await registry.should_skip(c) == "circuit_open"


@override_settings(GATEWAY_CIRCUIT_MAX_OPEN_SECONDS=600)
async def test_open_time_is_capped(registry: CircuitRegistry, clock: list[float], c: str) -> None:
    await registry.record_failure(c, reason="anthropic_429", retry_at=clock[0] + 86_400)
    clock[0] += 601
    assert await registry.should_skip(c) == ""


def test_retry_at_from_retry_after_seconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert retry_at_from_headers({"retry-after": "30"}, now) == now + 30
    http_date = formatdate(now + 90, usegmt=True)
    assert retry_at_from_headers({"retry-after": http_date}, now) == pytest.approx(now + 90)
    assert retry_at_from_headers({"retry-after": "soon"}, now) is None
    assert retry_at_from_headers({}, now) is None


def test_retry_at_from_unified_rate_limit_resets() -> None:
    now = 1_800_000_000.0
    headers = {
        "anthropic-ratelimit-unified-5h-reset": str(int(now + 600)),
        "anthropic-ratelimit-unified-7d-reset": "2027-01-15T10:00:00Z",
        "anthropic-ratelimit-unified-reset": str(int(now - 5)),  # already past: ignored
    }
    later = retry_at_from_headers(headers, now)
    assert later is not None and later > now + 600  # the latest future reset wins


@pytest.mark.skipif("not __import__('os').environ.get('REDIS_URL')", reason="needs REDIS_URL")
async def test_state_is_shared_between_workers_through_redis(clock: list[float]) -> None:
    import redis
    from django.conf import settings

    name = f"test-shared-{time.monotonic_ns()}"
    worker_a, worker_b = CircuitRegistry(), CircuitRegistry()
    try:
        await worker_a.record_failure(name, reason="anthropic_429", retry_at=clock[0] + 60)
        assert await worker_b.should_skip(name) == ""  # not yet read: no request waits on Redis
        await worker_b.wait_synced()
        clock[0] += 2
        assert await worker_b.should_skip(name) == "circuit_open"
        clock[0] += 61
        assert await worker_b.should_skip(name) == ""  # worker b probes and succeeds
        await worker_b.record_success(name, started_at=clock[0])
        clock[0] += 2  # past worker a's sync interval
        await worker_a.should_skip(name)
        await worker_a.wait_synced()
        assert await worker_a.should_skip(name) == ""
        assert worker_a.snapshot()[0]["state"] == "closed"
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(f"gateway:circuit:{name}")


@pytest.mark.skipif("not __import__('os').environ.get('REDIS_URL')", reason="needs REDIS_URL")
async def test_a_shared_state_read_starts_after_the_request_that_sets_it_off(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from django.conf import settings

    from gateway_project import redis as shared_redis

    # Long enough that a loaded machine cannot reach it between the two looks below.
    monkeypatch.setattr(shared_redis, "BACKGROUND_READ_DELAY", 0.5)
    name = f"test-delayed-{time.monotonic_ns()}"
    worker_a, worker_b = CircuitRegistry(), CircuitRegistry()
    try:
        await worker_a.record_failure(name, reason="anthropic_429", retry_at=clock[0] + 60)
        assert await worker_b.should_skip(name) == ""
        await asyncio.sleep(0.1)  # time enough for an undelayed read
        assert worker_b.snapshot()[0]["state"] == "closed"
        await worker_b.wait_synced()
        assert worker_b.snapshot()[0]["state"] == "open"
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(f"gateway:circuit:{name}")


async def test_redis_down_keeps_local_state_working(
    registry: CircuitRegistry, clock: list[float], c: str
) -> None:
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        await registry.record_failure(c, reason="anthropic_429", retry_at=clock[0] + 60)
        assert await registry.should_skip(c) == "circuit_open"
