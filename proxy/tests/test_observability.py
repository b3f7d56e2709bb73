"""Key-guessing throttle, Prometheus metrics and structured logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from django.test import Client

from gateway_project.observability import RequestIdFilter, request_id_var
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "x"}],
}


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "ok", usage={"input_tokens": 5, "output_tokens": 1}
    )
    return fake_upstream_settings


def test_repeated_bad_keys_are_refused_without_affecting_valid_keys(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    settings.GATEWAY_AUTH_FAILURE_LIMIT = 3
    bad = [f"gw_zzzzzzz{n}_{'x' * 43}" for n in range(5)]
    statuses = [
        httpx.post(gateway_server.key_url(key) + "/v1/messages", json=BODY).status_code
        for key in bad
    ]
    assert statuses == [401, 401, 401, 429, 429]
    refused = httpx.post(gateway_server.key_url(bad[0]) + "/v1/messages", json=BODY)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) > 0
    # The same address with a valid key: served.
    ok = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json=BODY,
        headers={"x-api-key": "sk-ant-client"},
    )
    assert ok.status_code == 200


def test_the_client_address_header_is_used_when_configured(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any
) -> None:
    settings.GATEWAY_AUTH_FAILURE_LIMIT = 1
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 1
    url = gateway_server.key_url("gw_zzzzzzzz_" + "y" * 43) + "/v1/messages"
    # The proxy in front appends the address it saw: the right-most entry.
    first = httpx.post(url, json=BODY, headers={"x-forwarded-for": "10.0.0.1, 203.0.113.7"})
    second = httpx.post(url, json=BODY, headers={"x-forwarded-for": "203.0.113.7"})
    other = httpx.post(url, json=BODY, headers={"x-forwarded-for": "203.0.113.7, 198.51.100.2"})
    assert (first.status_code, second.status_code, other.status_code) == (401, 429, 401)


@pytest.mark.parametrize(
    ("hops", "header"),
    [(1, "{n}.0.2.1, 203.0.113.7"), (2, "{n}.0.2.1, 203.0.113.7, 192.0.2.50")],
)
def test_rotating_forwarded_entries_does_not_escape_the_throttle(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any, hops: int, header: str
) -> None:
    settings.GATEWAY_AUTH_FAILURE_LIMIT = 5
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = hops
    url = gateway_server.key_url("gw_zzzzzzzz_" + "y" * 43) + "/v1/messages"
    statuses = [
        httpx.post(url, json=BODY, headers={"x-forwarded-for": header.format(n=n)}).status_code
        for n in range(1, 31)
    ]
    assert statuses == [401] * 5 + [429] * 25


def test_metrics_are_served_to_loopback_and_count_requests(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.add_fault("anthropic", HttpError(status=529))
    httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json=BODY,
        headers={"x-api-key": "sk-ant-client"},
    )
    text = httpx.get(gateway_server.base_url + "/metrics").text
    assert 'gateway_fallbacks_total{reason="anthropic_529"}' in text
    assert 'gateway_upstream_errors_total{kind="anthropic_529",upstream="anthropic"}' in text
    assert 'gateway_requests_total{provider="bedrock",status_class="2xx",streamed="false"}' in text
    assert "gateway_usage_spool_depth" in text
    assert "gateway_request_duration_seconds_bucket" in text


def test_metrics_need_the_token_when_one_is_set(settings: Any) -> None:
    settings.GATEWAY_METRICS_TOKEN = "metrics-token-123"
    client = Client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-123").status_code == 200


def test_metrics_refuse_non_loopback_clients_without_a_token(settings: Any) -> None:
    settings.GATEWAY_METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


def test_json_logs_carry_the_request_id() -> None:
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
        rename_fields={"levelname": "level"},
    )
    record = logging.LogRecord(
        "proxy", logging.WARNING, __file__, 1, "upstream %s", ("down",), None
    )
    token = request_id_var.set("gwreq_abc")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(formatter.format(record))
    assert line["request_id"] == "gwreq_abc"
    assert line["message"] == "upstream down"
    assert line["level"] == "WARNING"


def test_proxied_requests_log_with_their_request_id(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.add_fault("anthropic", HttpError(status=529))
    with caplog.at_level(logging.WARNING, logger="proxy.services"):
        response = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json=BODY,
            headers={"x-api-key": "sk-ant-client"},
        )
    request_id = response.headers["x-gateway-request-id"]
    records = [record for record in caplog.records if record.name == "proxy.services"]
    assert records and request_id in records[0].getMessage()
    RequestIdFilter().filter(records[0])


def test_access_keys_are_masked_in_every_log_line(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io

    from gateway_project.logfilters import RedactSecretsFilter, redact_secrets

    secret_part = key_holder.plaintext[12:]
    line = f'127.0.0.1 - "POST /ak/{key_holder.plaintext}/v1/messages?beta=true HTTP/1.1" 401'
    assert secret_part not in redact_secrets(line)
    assert key_holder.plaintext[:11] in redact_secrets(line)  # the prefix still identifies

    # The configured console handler masks records from any logger, whatever their arguments.
    console = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    assert any(isinstance(f, RedactSecretsFilter) for f in console.filters)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(console.formatter)
    for log_filter in console.filters:
        handler.addFilter(log_filter)
    for name in ("django.request", "uvicorn.access", "proxy.services"):
        handler.handle(
            logging.LogRecord(
                name,
                logging.WARNING,
                __file__,
                1,
                "%s %s",
                ("Unauthorized:", f"/ak/{key_holder.plaintext}/v1/x"),
                None,
            )
        )
    assert secret_part not in stream.getvalue()
    assert stream.getvalue().count("/ak/gw_") == 3

    # Responses of the proxy are not logged by Django's request logger at all.
    with caplog.at_level(logging.INFO, logger="django.request"):
        bad = httpx.post(
            gateway_server.key_url(key_holder.plaintext + "x") + "/v1/messages", json=BODY
        )
    assert bad.status_code == 401
    assert not [record for record in caplog.records if record.name == "django.request"]
