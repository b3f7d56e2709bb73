"""Request logs of real requests through the gateway (ASGI server, fake upstream): metadata,
bodies, per-key levels, streams reassembled to the whole answer, on both client surfaces."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from accounts.services import provider_credential_set
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.tests.conftest import GatewayServer, KeyHolder
from requestlog.capture import decode_body
from requestlog.levels import log_levels_reload
from requestlog.models import RequestBody, RequestLog
from requestlog.redaction import MASK
from requestlog.services import log_level_set
from usage.models import UsageEvent
from usage.recording import flush_usage_events

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
SECRET = "sk-ant-api03-" + "Q" * 40
BODY = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": f"my key is {SECRET}, mail me at ann@example.org"}],
}
HEADERS = {
    "x-api-key": "sk-ant-client-key-0123456789",
    "anthropic-version": "2023-06-01",
    "user-agent": "claude-cli/2.1.0 (external, cli)",
    "x-claude-code-session-id": "sess-42",
}


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer(
        content=[
            {"type": "text", "text": "Calling a tool."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "weather"}},
        ],
        stop_reason="tool_use",
        usage={"input_tokens": 11, "output_tokens": 7},
    )
    return fake_upstream_settings


def _post(gateway: GatewayServer, key: str, body: dict[str, Any], path: str = "/v1/messages",
          headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    return httpx.post(
        gateway.key_url(key) + path, json=body, headers=headers or HEADERS, timeout=10
    )


def _only_log() -> RequestLog:
    flush_usage_events()
    return RequestLog.objects.select_related("event").get()


def test_metadata_level_logs_the_request_without_bodies(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "metadata"
    response = _post(gateway_server, key_holder.plaintext, BODY)
    assert response.status_code == 200
    log = _only_log()
    assert log.request_id == response.headers["x-gateway-request-id"] == log.event.request_id
    assert log.surface == "messages" and log.level == "metadata" and not log.has_body
    assert log.user_agent == "claude-cli/2.1.0 (external, cli)"
    assert log.event.session_id == "sess-42"
    assert log.event.user_id == key_holder.user.id
    [attempt] = log.attempts
    assert attempt["provider"] == "anthropic" and attempt["outcome"] == "answered"
    assert attempt["status"] == 200 and attempt["latency_ms"] >= 0
    assert log.credential_fingerprint == attempt["credential"] != ""
    assert not RequestBody.objects.exists()


def test_off_level_records_usage_only(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "off"
    assert _post(gateway_server, key_holder.plaintext, BODY).status_code == 200
    flush_usage_events()
    assert UsageEvent.objects.count() == 1
    assert not RequestLog.objects.exists()


def test_a_key_level_overrides_the_installation(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "off"
    log_level_set(level="metadata", user_id=key_holder.user.id)
    log_level_set(level="full", access_key_id=key_holder.key_id)
    log_levels_reload()
    assert _post(gateway_server, key_holder.plaintext, BODY).status_code == 200
    log = _only_log()
    assert log.level == "full" and log.has_body
    stored = log.body
    request = json.loads(decode_body(stored.request))
    text = request["messages"][0]["content"]
    assert SECRET not in text and "ann@example.org" not in text and MASK in text
    assert stored.request_headers["x-api-key"] == MASK
    assert stored.request_headers["anthropic-version"] == "2023-06-01"
    answer = json.loads(decode_body(stored.response))
    assert answer["content"][1]["name"] == "lookup"


def _answers(
    gateway_server: GatewayServer, key: str, body: dict[str, Any], path: str,
    headers: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], httpx.Response]:  # fmt: skip
    """The stored answer of the request made whole, then streamed (reassembled)."""
    whole = _post(gateway_server, key, body, path, headers)
    assert whole.status_code == 200, whole.text
    streamed = _post(gateway_server, key, {**body, "stream": True}, path, headers)
    assert streamed.status_code == 200
    flush_usage_events()
    logs = list(RequestLog.objects.order_by("occurred_at").select_related("body"))
    assert [log.event.streamed for log in logs] == [False, True]
    return (
        json.loads(decode_body(logs[0].body.response)),
        json.loads(decode_body(logs[1].body.response)),
        whole,
    )


def test_a_streamed_anthropic_answer_is_stored_as_the_whole_message(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    whole, reassembled, response = _answers(
        gateway_server, key_holder.plaintext, BODY, "/v1/messages"
    )
    assert whole == response.json()
    for name in ("type", "role", "model", "content", "stop_reason", "stop_sequence"):
        assert reassembled[name] == whole[name], name
    assert reassembled["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    raw = decode_body(RequestLog.objects.get(event__streamed=True).body.stream)
    assert "event: message_start" in raw and SECRET not in raw


def test_a_streamed_openai_chat_answer_is_stored_as_the_whole_completion(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    provider_credential_set(provider="anthropic", secret="sk-ant-team-0123456789abcdef")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key_holder.plaintext}"}
    whole, reassembled, _ = _answers(
        gateway_server, key_holder.plaintext, body, "/v1/chat/completions", headers
    )
    assert whole["object"] == "chat.completion"
    assert (
        reassembled["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"]
    )
    assert reassembled["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    calls = reassembled["choices"][0]["message"]["tool_calls"]
    expected = whole["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in expected
    ]
    assert RequestLog.objects.filter(surface="chat").count() == 2
