"""The proxy routes: authentication, bad input, passthrough fidelity, streaming and disconnects."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AccessKey
from accounts.services import (
    access_key_revoke,
    access_key_rotate,
    access_key_soft_delete,
    provider_credential_set,
)
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import AnthropicStreamError, BedrockStreamException, HttpError, StreamCut
from proxy.tests.conftest import GatewayServer, KeyHolder

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


def _post(
    gateway: GatewayServer, key: str, body: Any = BODY, path: str = "/v1/messages", **kwargs: Any
) -> httpx.Response:
    headers = {**CLIENT_HEADERS, **kwargs.pop("headers", {})}
    if isinstance(body, bytes):
        return httpx.post(
            gateway.key_url(key) + path, content=body, headers=headers, timeout=10, **kwargs
        )
    return httpx.post(gateway.key_url(key) + path, json=body, headers=headers, timeout=10, **kwargs)


def _assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    return body


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["nope", "gw_aaaaaaaa_" + "x" * 43, "", "gw_aaaaaaaa", "%00"],
    ids=["garbage", "unknown", "empty", "prefix-only", "nul"],
)
def test_unknown_keys_are_rejected(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, key: str
) -> None:
    response = _post(gateway_server, key)
    if key == "":
        _assert_error(response, 404, "not_found_error")
    else:
        _assert_error(response, 401, "authentication_error")
    assert not fake.requests


def test_a_wrong_secret_with_a_real_prefix_is_rejected(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    forged = key_holder.plaintext[:12] + "A" * (len(key_holder.plaintext) - 12)
    _assert_error(_post(gateway_server, forged), 401, "authentication_error")


def test_revoked_expired_deleted_keys_and_inactive_users_are_rejected(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    key = AccessKey.objects.get(pk=key_holder.key_id)

    access_key_revoke(access_key=key)
    _assert_error(_post(gateway_server, key_holder.plaintext), 401, "authentication_error")

    AccessKey.objects.filter(pk=key.pk).update(status="active", expires_at=timezone.now())
    from accounts.keycache import invalidate_key_metadata

    invalidate_key_metadata()
    _assert_error(_post(gateway_server, key_holder.plaintext), 401, "authentication_error")

    AccessKey.objects.filter(pk=key.pk).update(expires_at=None)
    invalidate_key_metadata()
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    key_holder.user.is_active = False
    key_holder.user.save(update_fields=["is_active"])
    invalidate_key_metadata()
    _assert_error(_post(gateway_server, key_holder.plaintext), 401, "authentication_error")

    key_holder.user.is_active = True
    key_holder.user.save(update_fields=["is_active"])
    access_key_soft_delete(access_key=key)
    _assert_error(_post(gateway_server, key_holder.plaintext), 401, "authentication_error")


def test_a_rotated_key_works_until_its_grace_period_ends(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    key = AccessKey.objects.get(pk=key_holder.key_id)
    _, new_plaintext = access_key_rotate(access_key=key, grace=timedelta(hours=1))
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    assert _post(gateway_server, new_plaintext).status_code == 200

    from accounts.keycache import invalidate_key_metadata

    AccessKey.objects.filter(pk=key.pk).update(grace_ends_at=timezone.now() - timedelta(seconds=1))
    invalidate_key_metadata()
    _assert_error(_post(gateway_server, key_holder.plaintext), 401, "authentication_error")
    assert _post(gateway_server, new_plaintext).status_code == 200


def test_a_warm_request_makes_no_database_query(
    key_holder: KeyHolder, fake: FakeUpstream, django_assert_num_queries: Any
) -> None:
    # Django's sync test client runs the async view's ORM calls on this thread, so the query
    # counter sees every query the request makes.
    client = Client()
    url = f"/ak/{key_holder.plaintext}/v1/messages"
    headers = {"HTTP_X_API_KEY": "sk-ant-client-key"}
    cold = client.post(url, data=json.dumps(BODY), content_type="application/json", **headers)
    assert cold.status_code == 200
    with django_assert_num_queries(0):
        warm = client.post(url, data=json.dumps(BODY), content_type="application/json", **headers)
        assert warm.status_code == 200
        assert b"Hello there." in warm.content


def test_head_probe_answers_quickly(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    assert (
        httpx.head(gateway_server.key_url(key_holder.plaintext) + "/api/hello").status_code == 200
    )
    assert httpx.head(gateway_server.key_url("nope") + "/api/hello").status_code == 401
    assert not fake.requests


# --- routes and bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("POST", "/v1/complete", 404, "not_found_error"),
        ("GET", "/v2/messages", 404, "not_found_error"),
        ("GET", "/v1/messages", 405, "invalid_request_error"),
        ("DELETE", "/v1/models", 405, "invalid_request_error"),
    ],
)
def test_unknown_routes_and_methods_answer_in_anthropic_shape(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    method: str,
    path: str,
    status: int,
    error_type: str,
) -> None:
    response = httpx.request(method, gateway_server.key_url(key_holder.plaintext) + path)
    _assert_error(response, status, error_type)


def test_paths_without_a_key_answer_404_json(gateway_server: GatewayServer) -> None:
    for path in ("/ak", "/ak/", "/ak/somekey"):
        _assert_error(httpx.get(gateway_server.base_url + path), 404, "not_found_error")


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"max_tokens": 5, "messages": []}).encode(), "model"),
        (json.dumps({"model": MODEL, "max_tokens": 5}).encode(), "messages"),
        (json.dumps({"model": MODEL, "messages": []}).encode(), "max_tokens"),
        (json.dumps({"model": 5, "max_tokens": 5, "messages": []}).encode(), "model"),
    ],
    ids=[
        "malformed",
        "invalid-utf8",
        "array",
        "no-model",
        "no-messages",
        "no-max-tokens",
        "bad-model",
    ],
)
def test_malformed_requests_get_400_without_reaching_upstream(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    body: bytes,
    message_part: str,
) -> None:
    error = _assert_error(
        _post(gateway_server, key_holder.plaintext, body), 400, "invalid_request_error"
    )
    assert message_part in error["error"]["message"]
    assert not fake.requests


def test_oversized_bodies_get_413(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = 2048
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
    _assert_error(_post(gateway_server, key_holder.plaintext, big), 413, "request_too_large")
    assert not fake.requests


# --- Anthropic passthrough ------------------------------------------------------------------


def test_body_is_forwarded_byte_for_byte_with_end_to_end_headers(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    raw = (
        b'{ "model" :"claude-sonnet-4-6",  "max_tokens":64,"messages":[{"role":"user",'
        b'"content":"caf\\u00e9 \xe2\x98\x95"}], "context_management": {"edits": []},'
        b' "future_field": [1, 2.50, null]}'
    )
    response = _post(
        gateway_server,
        key_holder.plaintext,
        raw,
        path="/v1/messages?beta=true",
        headers={
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
            "x-app": "cli",
            "user-agent": "claude-cli/2.1.0 (external, cli)",
            "x-claude-code-session-id": "3f1c-session",
            "cookie": "sessionid=admin-session",
            "x-forwarded-for": "10.1.2.3",
            "connection": "keep-alive, x-custom",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert response.headers["x-gateway-request-id"].startswith("gwreq_")
    seen = fake.last_request
    assert seen.body == raw
    assert seen.query == ""
    assert seen.header("x-api-key") == "sk-ant-client-key"
    assert seen.header("anthropic-version") == "2023-06-01"
    assert seen.header("anthropic-beta") == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert seen.header("x-app") == "cli"
    assert seen.header("user-agent") == "claude-cli/2.1.0 (external, cli)"
    assert seen.header("x-claude-code-session-id") == "3f1c-session"
    assert seen.header("cookie") is None
    assert seen.header("x-forwarded-for") is None
    assert seen.header("accept-encoding") == "identity"


def test_oauth_bearer_tokens_are_forwarded_as_sent(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json=BODY,
        headers={
            "authorization": "Bearer sk-ant-oat01-token",
            "anthropic-beta": "oauth-2025-04-20",
        },
    )
    assert response.status_code == 200
    assert fake.last_request.header("authorization") == "Bearer sk-ant-oat01-token"
    assert fake.last_request.header("x-api-key") is None


def test_stored_anthropic_credential_is_used_when_the_client_sends_none(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    provider_credential_set(
        provider="anthropic", secret="sk-ant-stored-team-key-1234", user=key_holder.user
    )
    response = httpx.post(gateway_server.key_url(key_holder.plaintext) + "/v1/messages", json=BODY)
    assert response.status_code == 200
    assert fake.last_request.header("x-api-key") == "sk-ant-stored-team-key-1234"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_non_retryable_errors_come_back_unchanged(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    status: int,
) -> None:
    fake.add_fault(
        "anthropic",
        HttpError(
            status=status, message="exact upstream wording", headers={"request-id": "req_42"}
        ),
    )
    response = _post(gateway_server, key_holder.plaintext)
    assert response.status_code == status
    assert response.json()["error"]["message"] == "exact upstream wording"
    assert response.headers["request-id"] == "req_42"
    assert response.headers["x-gateway-provider"] == "anthropic"
    assert not fake.requests_to("bedrock")
    (event,) = recorded_events()
    assert event.status_code == status and event.provider == "anthropic"


# --- streaming ------------------------------------------------------------------------------


def test_stream_chunks_reach_the_client_before_the_upstream_finishes(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    fake.pacing = type(fake.pacing)(text_deltas=6, delta_interval=0.3)
    with httpx.stream(
        "POST",
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={**BODY, "stream": True},
        headers=CLIENT_HEADERS,
        timeout=10,
    ) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        assert b"message_start" in first
        # The upstream is still sending: nothing was held back for buffering.
        assert fake.last_request.outcome == "pending"
        rest = b"".join(chunks)
    assert rest.endswith(b"\n\n") and b"message_stop" in rest


def test_client_disconnect_closes_upstream_and_records_partial_usage(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, recorded_events: Any
) -> None:
    fake.pacing = type(fake.pacing)(text_deltas=20, delta_interval=0.2)
    with httpx.stream(
        "POST",
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={**BODY, "stream": True},
        headers={**CLIENT_HEADERS, "x-claude-code-session-id": "sess-9"},
        timeout=10,
    ) as response:
        next(response.iter_raw())
    # Leaving the block closed our connection mid-stream.
    abandoned = fake.wait_for_disconnect(timeout=5)
    assert abandoned.client_disconnected_at is not None
    fake.wait_idle(timeout=5)
    deadline = time.monotonic() + 5
    events: list[Any] = []
    while not events and time.monotonic() < deadline:
        events = recorded_events()
    (event,) = events
    assert event.client_disconnected is True
    assert event.input_tokens == 11  # from message_start, before the cut
    assert event.session_id == "sess-9"


def test_anthropic_stream_cut_mid_way_ends_with_an_error_event(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, recorded_events: Any
) -> None:
    fake.add_fault("anthropic", StreamCut(after_events=3))
    response = _post(gateway_server, key_holder.plaintext, {**BODY, "stream": True})
    assert response.status_code == 200
    assert "event: message_start" in response.text
    assert response.text.rstrip().splitlines()[-2] == "event: error"
    error = json.loads(response.text.rstrip().splitlines()[-1].removeprefix("data: "))
    assert error["error"]["type"] == "api_error"
    (event,) = recorded_events()
    assert event.status_code == 502


def test_anthropic_error_event_passes_through(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, recorded_events: Any
) -> None:
    fake.add_fault("anthropic", AnthropicStreamError(after_events=2, error_type="overloaded_error"))
    response = _post(gateway_server, key_holder.plaintext, {**BODY, "stream": True})
    assert "event: error" in response.text and "overloaded_error" in response.text
    (event,) = recorded_events()
    assert event.status_code >= 500


@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_bedrock_exception_mid_stream_becomes_an_sse_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    mode: str,
) -> None:
    from accounts.keycache import invalidate_key_metadata
    from accounts.models import ProviderCredential

    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()
    fake.add_fault("anthropic", HttpError(status=529))
    fake.add_fault("bedrock", BedrockStreamException(after_events=2))
    response = _post(gateway_server, key_holder.plaintext, {**BODY, "stream": True})
    assert response.status_code == 200
    lines = response.text.rstrip().splitlines()
    assert lines[-2] == "event: error"
    assert json.loads(lines[-1].removeprefix("data: "))["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_bedrock_exception_as_first_frame_is_an_http_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
    mode: str,
) -> None:
    from accounts.keycache import invalidate_key_metadata
    from accounts.models import ProviderCredential

    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()
    settings.GATEWAY_ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    fake.add_fault(
        "bedrock", BedrockStreamException(after_events=0, exception_type="validationException")
    )
    response = _post(gateway_server, key_holder.plaintext, {**BODY, "stream": True})
    _assert_error(response, 400, "invalid_request_error")


def test_deeply_nested_json_is_a_400_not_a_crash(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    depth = 100_000
    raw = (
        b'{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[],"x":'
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )
    error = _assert_error(
        _post(gateway_server, key_holder.plaintext, raw), 400, "invalid_request_error"
    )
    assert "nested" in error["error"]["message"]


def test_known_keys_keep_working_while_the_database_is_away(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    import accounts.selectors

    settings.GATEWAY_KEY_CACHE_TTL = 0.05
    assert _post(gateway_server, key_holder.plaintext).status_code == 200

    def database_away(prefix: str) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(accounts.selectors, "key_metadata_load", database_away)
    time.sleep(0.1)  # the cached entry has expired: only the database could refresh it
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    # A key never seen before cannot be checked: a clear, retryable error.
    other = "gw_qqqqqqqq_" + "z" * 43
    _assert_error(_post(gateway_server, other), 503, "overloaded_error")
