"""Clients that hang up mid-request: the upstream request is closed within a second, the usage
seen so far is recorded, and nothing is left behind (upstream connections, streams, tasks).

Every path: Anthropic passthrough and both Bedrock modes (InvokeModel, Converse), streamed and
not. The fake upstream counts its open connections and records when a client went away.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay, HttpError
from proxy.testing.records import Pacing, RecordedRequest
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import gateway_task_count, report_counts

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}
INPUT_TOKENS = 11
# The bound between the client hanging up and the upstream request being closed.
UPSTREAM_CLOSE_BOUND = 1.0
PATHS = ["anthropic", "invoke", "converse"]


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "one two three four five six seven eight nine ten eleven twelve",
        usage={"input_tokens": INPUT_TOKENS, "output_tokens": 12},
    )
    # Long enough that no stream ends on its own during a test.
    fake_upstream_settings.pacing = Pacing(text_deltas=12, delta_interval=0.5)
    return fake_upstream_settings


def _route(path: str, fake: FakeUpstream) -> None:
    """Send the next request down ``path``: straight to Anthropic, or to Bedrock in a mode."""
    if path == "anthropic":
        return
    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=path)
    invalidate_key_metadata()
    fake.set_default_fault("anthropic", HttpError(status=529))


def _hang_up_mid_stream(gateway: GatewayServer, key: str) -> float:
    """Read the first chunk of a streamed answer, then close the connection; returns when."""
    with httpx.stream(
        "POST",
        gateway.key_url(key) + "/v1/messages",
        json={**BODY, "stream": True},
        headers=CLIENT_HEADERS,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert b"message_start" in first
    return time.monotonic()


def _hang_up_before_the_answer(gateway: GatewayServer, key: str) -> float:
    """A non-streaming request given up by the client while the upstream is still thinking."""
    with contextlib.suppress(httpx.ReadTimeout):
        httpx.post(
            gateway.key_url(key) + "/v1/messages", json=BODY, headers=CLIENT_HEADERS, timeout=0.5
        )
    return time.monotonic()


def _abandoned_upstream(fake: FakeUpstream, upstream: str) -> RecordedRequest:
    fake.wait_until(
        lambda: any(request.abandoned for request in fake.requests_to(upstream)), timeout=5
    )
    return next(request for request in fake.requests_to(upstream) if request.abandoned)


def _wait_for_events(recorded_events: Any, count: int, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    events = recorded_events()
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        events = recorded_events()
    return list(events)


@pytest.mark.parametrize("path", PATHS)
def test_hanging_up_mid_stream_closes_upstream_and_records_partial_usage(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    path: str,
) -> None:
    _route(path, fake)
    closed_at = _hang_up_mid_stream(gateway_server, key_holder.plaintext)
    upstream = "anthropic" if path == "anthropic" else "bedrock"
    abandoned = _abandoned_upstream(fake, upstream)
    assert abandoned.client_disconnected_at is not None
    assert abandoned.client_disconnected_at - closed_at < UPSTREAM_CLOSE_BOUND
    assert abandoned.streaming and abandoned.outcome == "client_disconnected"
    fake.wait_idle(timeout=5)

    (event,) = _wait_for_events(recorded_events, 1)
    assert event.client_disconnected is True
    assert event.provider == upstream
    assert event.streamed is True
    if path != "converse":
        # Anthropic's message_start carries the input tokens (InvokeModel streams it as is);
        # Converse reports usage only in its final metadata event, which never came.
        assert event.input_tokens == INPUT_TOKENS


@pytest.mark.parametrize("path", PATHS)
def test_hanging_up_before_a_non_streamed_answer_closes_upstream(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    path: str,
) -> None:
    _route(path, fake)
    upstream = "anthropic" if path == "anthropic" else "bedrock"
    fake.add_fault(upstream, Delay(delay=5.0))
    closed_at = _hang_up_before_the_answer(gateway_server, key_holder.plaintext)
    abandoned = _abandoned_upstream(fake, upstream)
    assert abandoned.client_disconnected_at is not None
    assert abandoned.client_disconnected_at - closed_at < UPSTREAM_CLOSE_BOUND
    fake.wait_idle(timeout=5)
    # The gateway records the hang-up just after closing the upstream request: wait for it, so
    # that it does not land in the next test's database.
    assert len(_wait_for_events(recorded_events, 1)) == 1


@pytest.mark.parametrize("path", PATHS)
def test_hanging_up_before_a_non_streamed_answer_is_recorded(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    path: str,
) -> None:
    _route(path, fake)
    fake.add_fault("anthropic" if path == "anthropic" else "bedrock", Delay(delay=5.0))
    _hang_up_before_the_answer(gateway_server, key_holder.plaintext)
    fake.wait_for_disconnect(timeout=5)
    fake.wait_idle(timeout=5)
    (event,) = _wait_for_events(recorded_events, 1)
    # Nothing was answered: no tokens known, but the request is accounted, as nginx's 499.
    assert event.client_disconnected is True
    assert event.status_code == 499
    assert event.provider == ("anthropic" if path == "anthropic" else "bedrock")
    assert event.streamed is False


def _settled(fake: FakeUpstream, baseline_connections: int, baseline_tasks: int) -> bool:
    return (
        fake.requests_in_flight == 0
        and fake.streams_in_flight == 0
        and fake.connections_open <= baseline_connections
        and gateway_task_count() <= baseline_tasks
    )


def test_twenty_disconnects_leak_no_connection_stream_or_task(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A baseline after one complete answer per path: pooled keep-alive connections and the
    # gateway's long-lived tasks exist by then.
    slow = fake.pacing
    fake.pacing = Pacing(text_deltas=12, delta_interval=0.0)
    for path in PATHS:
        _route(path, fake)
        response = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json={**BODY, "stream": True},
            headers=CLIENT_HEADERS,
            timeout=20,
        )
        assert response.status_code == 200 and b"message_stop" in response.content
        fake.set_default_fault("anthropic", None)
    fake.wait_idle(timeout=5)
    fake.pacing = slow
    baseline_connections = fake.connections_open
    # Allowance for the background reads of shared state a request may start.
    baseline_tasks = gateway_task_count() + 2
    baseline_events = {event.id for event in recorded_events()}

    hang_ups = streamed_hang_ups = 0
    for round_number in range(20):
        path = PATHS[round_number % len(PATHS)]
        _route(path, fake)
        if round_number % 2:
            fake.add_fault("anthropic" if path == "anthropic" else "bedrock", Delay(delay=5.0))
            _hang_up_before_the_answer(gateway_server, key_holder.plaintext)
        else:
            _hang_up_mid_stream(gateway_server, key_holder.plaintext)
            streamed_hang_ups += 1
        hang_ups += 1
        fake.set_default_fault("anthropic", None)

    deadline = time.monotonic() + 5
    while not _settled(fake, baseline_connections, baseline_tasks):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    leaked = {
        "requests in flight": fake.requests_in_flight,
        "streams in flight": fake.streams_in_flight,
        "connections open": (fake.connections_open, baseline_connections),
        "gateway tasks": (gateway_task_count(), baseline_tasks),
    }
    abandoned = len(fake.abandoned_requests)
    report_counts(
        capsys,
        "client disconnects",
        hang_ups=hang_ups,
        upstream_requests_closed=abandoned,
        upstream_connections_open=fake.connections_open,
        baseline_connections=baseline_connections,
    )
    assert abandoned == hang_ups
    # Each hang-up is recorded just after its upstream request is closed: wait for the last.
    all_events = _wait_for_events(recorded_events, len(baseline_events) + hang_ups)
    events = [event for event in all_events if event.id not in baseline_events]
    assert len(events) == hang_ups
    assert all(event.client_disconnected for event in events)
    assert sum(event.streamed for event in events) == streamed_hang_ups
    assert _settled(fake, baseline_connections, baseline_tasks), leaked
