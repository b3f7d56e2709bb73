"""Upstream faults through the real gateway, filling what test_e2e_sdk and test_proxy_routes leave.

Both upstreams down (streamed and not, both Bedrock modes), Bedrock throttling, the circuit
breaker's whole cycle (open after N failures, half-open probe that fails or succeeds, one probe
at a time), and the time bounds: a stalled stream, a slow Bedrock and a slow non-streaming
Anthropic answer all end within their timeouts with one well-formed Anthropic error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential
from proxy.circuit import circuits
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay, DropConnection, HttpError, StreamCut
from proxy.testing.records import Pacing
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import (
    assert_error_response,
    rebuild_upstream_client,
    sse_events,
)

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}
NOTHING_LISTENS = "http://127.0.0.1:9"
# How long any single request in this module may take before we call it a hang: well above
# every timeout configured here, well below the stalls the fake is told to make.
CLIENT_TIMEOUT = 8.0
STALL_SECONDS = 60.0


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


def _set_mode(mode: str) -> None:
    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()


def _post(gateway: GatewayServer, key: str, *, stream: bool = False, **body: Any) -> httpx.Response:
    return httpx.post(
        gateway.key_url(key) + "/v1/messages",
        json={**BODY, **body, "stream": stream},
        headers=CLIENT_HEADERS,
        timeout=CLIENT_TIMEOUT,
    )


# --- both upstreams down --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_anthropic_refused_and_bedrock_503_give_one_anthropic_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
    recorded_events: Any,
    mode: str,
    stream: bool,
) -> None:
    _set_mode(mode)
    settings.GATEWAY_ANTHROPIC_BASE_URL = NOTHING_LISTENS
    fake.add_fault("bedrock", HttpError(status=503))
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    # Nothing was streamed: one JSON error, not an SSE stream holding one.
    error = assert_error_response(response, 529, "overloaded_error")
    assert set(error) == {"type", "error"}
    assert response.headers["x-gateway-provider"] == "bedrock"
    assert response.headers["x-gateway-fallback-reason"] == "connect_error"
    assert response.headers["x-gateway-fallback-error"] == "529 overloaded_error"
    assert len(fake.requests_to("bedrock")) == 1
    (event,) = recorded_events()
    assert (event.provider, event.status_code) == ("bedrock", 529)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_both_upstreams_unreachable_give_one_anthropic_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
    recorded_events: Any,
    stream: bool,
) -> None:
    settings.GATEWAY_ANTHROPIC_BASE_URL = NOTHING_LISTENS
    settings.GATEWAY_BEDROCK_ENDPOINT_URL = NOTHING_LISTENS
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    assert_error_response(response, 529, "overloaded_error")
    (event,) = recorded_events()
    assert event.status_code == 529


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_dropping_the_connection_and_bedrock_503(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    stream: bool,
) -> None:
    fake.add_fault("anthropic", DropConnection())
    fake.add_fault("bedrock", HttpError(status=503))
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    assert_error_response(response, 529, "overloaded_error")
    assert response.headers["x-gateway-fallback-reason"] == "upstream_error"


# --- Bedrock throttling ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_bedrock_throttling_is_a_429_with_retry_after(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
    mode: str,
    stream: bool,
) -> None:
    _set_mode(mode)
    settings.GATEWAY_ANTHROPIC_BASE_URL = NOTHING_LISTENS
    fake.add_fault("bedrock", HttpError(status=429, error_type="ThrottlingException"))
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    assert_error_response(response, 429, "rate_limit_error")
    # Bedrock sends no retry-after: the gateway makes one up, in whole seconds, for the SDKs.
    assert int(response.headers["retry-after"]) > 0


def test_anthropic_429_and_bedrock_throttled_return_anthropic_s_own_429(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.add_fault(
        "anthropic",
        HttpError(status=429, message="Your rate limit", headers={"retry-after": "17"}),
    )
    fake.add_fault("bedrock", HttpError(status=429, error_type="ThrottlingException"))
    response = _post(gateway_server, key_holder.plaintext)
    error = assert_error_response(response, 429, "rate_limit_error")
    assert error["error"]["message"] == "Your rate limit"
    assert response.headers["retry-after"] == "17"
    assert response.headers["x-gateway-fallback-error"] == "429 rate_limit_error"


# --- the circuit breaker, through the gateway -----------------------------------------------


@pytest.fixture
def fast_circuit(settings: Any) -> float:
    """Opens after 3 failures, for a cooldown short enough to wait out and long enough that
    the requests a test sends while it is open all fall inside it, even on a busy machine."""
    settings.GATEWAY_CIRCUIT_FAILURE_THRESHOLD = 3
    settings.GATEWAY_CIRCUIT_WINDOW_SECONDS = 30.0
    settings.GATEWAY_CIRCUIT_COOLDOWN_SECONDS = 1.5
    return 1.5


def _wait_past_cooldown(seconds: float) -> None:
    time.sleep(seconds + 0.2)


def test_circuit_opens_after_threshold_and_recovers_through_the_probe(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    fast_circuit: float,
) -> None:
    fake.set_default_fault("anthropic", HttpError(status=500))
    reasons = [
        _post(gateway_server, key_holder.plaintext).headers["x-gateway-fallback-reason"]
        for _ in range(3)
    ]
    assert reasons == ["anthropic_500"] * 3
    assert len(fake.requests_to("anthropic")) == 3

    # Open: Bedrock answers at once and Anthropic is not asked.
    for _ in range(2):
        response = _post(gateway_server, key_holder.plaintext)
        assert response.status_code == 200
        assert response.headers["x-gateway-fallback-reason"] == "circuit_open"
    assert len(fake.requests_to("anthropic")) == 3

    # Half-open, Anthropic still failing: the probe fails (the client is still served) and the
    # circuit opens again.
    _wait_past_cooldown(fast_circuit)
    probe = _post(gateway_server, key_holder.plaintext)
    assert probe.status_code == 200
    assert probe.headers["x-gateway-fallback-reason"] == "anthropic_500"
    assert len(fake.requests_to("anthropic")) == 4
    assert (
        _post(gateway_server, key_holder.plaintext).headers["x-gateway-fallback-reason"]
        == "circuit_open"
    )
    assert len(fake.requests_to("anthropic")) == 4

    # Half-open, Anthropic healthy: the probe succeeds and closes the circuit.
    fake.set_default_fault("anthropic", None)
    _wait_past_cooldown(fast_circuit)
    for _ in range(3):
        response = _post(gateway_server, key_holder.plaintext)
        assert response.status_code == 200
        assert response.headers["x-gateway-provider"] == "anthropic"
    assert len(fake.requests_to("anthropic")) == 7
    # Every upstream has its circuit; Bedrock's stayed closed throughout.
    by_upstream = {str(circuit["name"]).split(":")[0]: circuit for circuit in circuits.snapshot()}
    assert by_upstream["anthropic"]["state"] == "closed"
    assert by_upstream["anthropic"]["times_opened"] == 2
    assert by_upstream["bedrock"]["times_opened"] == 0


def test_half_open_lets_one_probe_through_while_others_use_bedrock(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    fast_circuit: float,
) -> None:
    fake.add_fault("anthropic", *[HttpError(status=503) for _ in range(3)])
    for _ in range(3):
        _post(gateway_server, key_holder.plaintext)
    _wait_past_cooldown(fast_circuit)

    fake.add_fault("anthropic", Delay(delay=1.0))  # a slow but healthy probe
    results: dict[str, httpx.Response] = {}
    probe = threading.Thread(
        target=lambda: results.setdefault("probe", _post(gateway_server, key_holder.plaintext))
    )
    probe.start()
    fake.wait_until(lambda: len(fake.requests_to("anthropic")) == 4, timeout=5)
    other = _post(gateway_server, key_holder.plaintext)
    probe.join(CLIENT_TIMEOUT)
    assert other.headers["x-gateway-provider"] == "bedrock"
    assert other.headers["x-gateway-fallback-reason"] == "circuit_open"
    assert results["probe"].headers["x-gateway-provider"] == "anthropic"
    assert len(fake.requests_to("anthropic")) == 4
    assert _post(gateway_server, key_holder.plaintext).headers["x-gateway-provider"] == "anthropic"


def test_a_success_sent_before_the_circuit_opened_does_not_close_it(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    """Under load, requests are in flight when a 429 opens the circuit; their successes come
    later and must not undo the retry-after Anthropic just gave."""
    fake.add_fault(
        "anthropic", Delay(delay=1.0), HttpError(status=429, headers={"retry-after": "60"})
    )
    results: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: results.setdefault("slow", _post(gateway_server, key_holder.plaintext))
    )
    slow.start()
    fake.wait_until(lambda: len(fake.requests_to("anthropic")) == 1, timeout=5)
    limited = _post(gateway_server, key_holder.plaintext)
    assert limited.headers["x-gateway-fallback-reason"] == "anthropic_429"
    slow.join(CLIENT_TIMEOUT)
    assert results["slow"].headers["x-gateway-provider"] == "anthropic"

    after = _post(gateway_server, key_holder.plaintext)
    assert after.headers.get("x-gateway-fallback-reason") == "circuit_open"
    assert len(fake.requests_to("anthropic")) == 2


def test_open_circuit_with_bedrock_failing_still_tries_anthropic(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    fast_circuit: float,
) -> None:
    """An open circuit must not leave the client with Bedrock's error while Anthropic may work."""
    fake.add_fault("anthropic", *[HttpError(status=529) for _ in range(3)])
    for _ in range(3):
        _post(gateway_server, key_holder.plaintext)
    fake.add_fault("bedrock", HttpError(status=503))
    response = _post(gateway_server, key_holder.plaintext)
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "anthropic"


# --- nothing hangs past its timeouts --------------------------------------------------------


@pytest.fixture
def short_read_timeout(settings: Any) -> Iterator[float]:
    """GATEWAY_UPSTREAM_READ_TIMEOUT of 0.5 s, on a client built for it (and rebuilt after)."""
    settings.GATEWAY_UPSTREAM_READ_TIMEOUT = 0.5
    rebuild_upstream_client()
    yield 0.5
    rebuild_upstream_client()


def _stream_within_bound(gateway: GatewayServer, key: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = _post(gateway, key, stream=True)
    return response, time.monotonic() - started


def _assert_ends_with_error_event(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0][0] == "message_start"
    name, data = events[-1]
    assert name == "error", events[-3:]
    assert data["type"] == "error" and data["error"]["type"] == "api_error"
    assert data["error"]["message"]
    assert "message_stop" not in [name for name, _ in events]
    return dict(data)


def test_anthropic_stream_stalling_mid_way_ends_with_an_error_event(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    short_read_timeout: float,
    recorded_events: Any,
) -> None:
    fake.pacing = Pacing(text_deltas=4, delta_interval=STALL_SECONDS)
    # A hang would end in the client's own timeout (an exception), not in a response.
    response, elapsed = _stream_within_bound(gateway_server, key_holder.plaintext)
    _assert_ends_with_error_event(response)
    assert elapsed < CLIENT_TIMEOUT
    # The gateway hung up on the stalled upstream instead of waiting for it.
    fake.wait_for_disconnect(timeout=2)
    (event,) = recorded_events()
    assert event.status_code == 502 and event.input_tokens == 11


@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_bedrock_stream_stalling_mid_way_ends_with_an_error_event(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    short_read_timeout: float,
    recorded_events: Any,
    mode: str,
) -> None:
    _set_mode(mode)
    fake.add_fault("anthropic", HttpError(status=529))
    fake.pacing = Pacing(text_deltas=4, delta_interval=STALL_SECONDS)
    response, elapsed = _stream_within_bound(gateway_server, key_holder.plaintext)
    assert response.headers["x-gateway-provider"] == "bedrock"
    _assert_ends_with_error_event(response)
    assert elapsed < CLIENT_TIMEOUT
    fake.wait_for_disconnect(timeout=2)
    (event,) = recorded_events()
    assert (event.provider, event.status_code) == ("bedrock", 502)


@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_bedrock_stream_cut_mid_way_ends_with_an_error_event(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    mode: str,
) -> None:
    _set_mode(mode)
    fake.add_fault("anthropic", HttpError(status=529))
    fake.add_fault("bedrock", StreamCut(after_events=3))
    response = _post(gateway_server, key_holder.plaintext, stream=True)
    _assert_ends_with_error_event(response)
    (event,) = recorded_events()
    assert event.status_code == 502 and not event.client_disconnected


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_slow_bedrock_answer_ends_in_a_timeout_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    short_read_timeout: float,
    settings: Any,
    stream: bool,
) -> None:
    settings.GATEWAY_ANTHROPIC_BASE_URL = NOTHING_LISTENS
    fake.add_fault("bedrock", Delay(delay=STALL_SECONDS))
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    assert_error_response(response, 504, "timeout_error")
    fake.wait_for_disconnect(timeout=2)


def test_slow_non_streaming_anthropic_falls_back_after_its_timeout(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT = 0.5
    fake.add_fault("anthropic", Delay(delay=STALL_SECONDS))
    started = time.monotonic()
    response = _post(gateway_server, key_holder.plaintext)
    assert time.monotonic() - started < CLIENT_TIMEOUT
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "bedrock"
    assert response.headers["x-gateway-fallback-reason"] == "first_byte_timeout"
    # The abandoned Anthropic request was closed, not left running.
    fake.wait_for_disconnect(timeout=2)


def test_slow_non_streaming_anthropic_without_fallback_is_a_504(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    settings: Any,
    recorded_events: Any,
) -> None:
    settings.GATEWAY_ANTHROPIC_NONSTREAM_TIMEOUT = 0.5
    fake.add_fault("anthropic", Delay(delay=STALL_SECONDS))
    response = _post(gateway_server, key_holder.plaintext)
    assert_error_response(response, 504, "timeout_error")
    assert response.headers["x-gateway-no-fallback-reason"] == "no_bedrock_credential"
    (event,) = recorded_events()
    assert (event.provider, event.status_code) == ("anthropic", 504)


def test_stream_first_byte_timeout_without_fallback_is_a_504(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT = 0.5
    fake.add_fault("anthropic", Delay(delay=STALL_SECONDS))
    response = _post(gateway_server, key_holder.plaintext, stream=True)
    assert_error_response(response, 504, "timeout_error")


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_each_leg_is_tried_at_most_once_with_the_circuit_open_and_both_failing(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    fast_circuit: float,
    recorded_events: Any,
    stream: bool,
) -> None:
    fake.set_default_fault("anthropic", HttpError(status=529))
    for _ in range(3):  # opens Anthropic's circuit; Bedrock answers meanwhile
        assert _post(gateway_server, key_holder.plaintext).status_code == 200
    fake.reset()
    fake.answer = ScriptedAnswer.text("Hello there.")
    fake.set_default_fault("anthropic", HttpError(status=529))
    fake.set_default_fault(
        "bedrock", HttpError(status=503, error_type="ServiceUnavailableException")
    )
    response = _post(gateway_server, key_holder.plaintext, stream=stream)
    assert response.status_code == 529
    # Bedrock first (the circuit is open), then Anthropic still gets its one try: never a
    # second Bedrock call.
    assert [request.upstream for request in fake.requests] == ["bedrock", "anthropic"]
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert response.headers["x-gateway-fallback-error"] == "529 overloaded_error"
    assert recorded_events()[-1].provider == "anthropic"
