"""A log row the database refuses (PostgreSQL takes no NUL in text or JSON, and no lone
surrogate) is written again without those characters, so it is kept; one that still fails is
dropped, named by its request id, and never costs its usage event."""

from __future__ import annotations

import json
import logging
from typing import Any
from unittest import mock

import httpx
import pytest
from django.db import DataError, connection

from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.tests.conftest import GatewayServer, KeyHolder
from requestlog.capture import LogCapture, decode_body
from requestlog.models import RequestLog
from usage import recording
from usage.models import UsageEvent
from usage.recording import UsageRecord, flush_usage_events

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = {
    "x-api-key": "sk-ant-client-key-0123456789",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}
# As a client sends them: JSON escapes of a NUL and of a lone surrogate.
NUL_AND_SURROGATE = (
    b'{"model": "claude-sonnet-4-6\\u0000", "max_tokens": 16, "messages": [{"role": "user", '
    b'"content": "before\\u0000after \\ud800 alone"}]}'
)
SURROGATE_MODEL = (
    b'{"model": "claude-sonnet-4-6\\udfff", "max_tokens": 16, "messages": [{"role": "user", '
    b'"content": "hi"}]}'
)


def _attempt_models() -> dict[str, str]:
    return {log.request_id: log.attempts[0]["model"] for log in RequestLog.objects.all()}


def test_logs_of_bodies_holding_nul_and_lone_surrogates_are_kept(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: FakeUpstream,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    fake_upstream_settings.answer = ScriptedAnswer.text("Noted.")
    url = gateway_server.key_url(key_holder.plaintext) + "/v1/messages"
    answered = httpx.post(url, content=NUL_AND_SURROGATE, headers=HEADERS, timeout=10)
    assert answered.status_code == 200, answered.text
    # The fake upstream cannot write this model back (UTF-8 has no lone surrogate): a 5xx,
    # which is logged like any other answer.
    failed = httpx.post(url, content=SURROGATE_MODEL, headers=HEADERS, timeout=10)
    with caplog.at_level(logging.WARNING, logger="usage.recording"):
        flush_usage_events()

    assert UsageEvent.objects.count() == 2
    first = answered.headers["x-gateway-request-id"]
    second = failed.headers["x-gateway-request-id"]
    assert set(_attempt_models()) == {first, second}
    if connection.vendor == "postgresql":
        # What PostgreSQL refused is gone from the row; everything else is there.
        assert _attempt_models() == {first: "claude-sonnet-4-6", second: "claude-sonnet-4-6\ufffd"}
        stored = [record.message for record in caplog.records if "was stored" in record.message]
        assert sorted(stored) == sorted(
            f"request log: the log of {request_id} was stored without the NUL characters or "
            "lone surrogates the database refused"
            for request_id in (first, second)
        )
    assert not [record for record in caplog.records if "dropped" in record.message]
    log = RequestLog.objects.select_related("body").get(request_id=first)
    assert log.has_body and log.level == "full"
    request = json.loads(decode_body(log.body.request))
    assert request["messages"][0]["content"].startswith("before")
    assert "after" in request["messages"][0]["content"]
    answer = json.loads(decode_body(log.body.response))
    assert answer["type"] == "message"


def _record(model: str, request_id: str, user_agent: str = "") -> UsageRecord:
    return UsageRecord(
        provider="anthropic",
        requested_model="m",
        request_id=request_id,
        log=LogCapture(
            level="metadata",
            surface="messages",
            user_agent=user_agent,
            attempts=[{"provider": "anthropic", "model": model, "outcome": "answered"}],
        ),
    )


def test_one_refused_log_in_a_batch_does_not_cost_the_others() -> None:
    # A lone surrogate in text is refused by every driver (sqlite3 included: it cannot encode
    # it); NUL and surrogate escapes in JSON by PostgreSQL.
    records = [
        _record("m", "gwreq_clean"),
        _record("m\x00\ud800", "gwreq_dirty", user_agent="claude-cli\udcff/2"),
    ]
    recording._write_batch(records)
    assert UsageEvent.objects.count() == 2
    assert _attempt_models()["gwreq_clean"] == "m"
    dirty = RequestLog.objects.get(request_id="gwreq_dirty")
    assert dirty.user_agent == "claude-cli\ufffd/2"
    assert dirty.attempts[0]["model"] in ("m\ufffd", "m\x00\ud800")


def test_a_log_refused_even_when_scrubbed_is_dropped_with_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writes = mock.Mock(side_effect=DataError("refused"))
    with (
        mock.patch("requestlog.services.request_logs_write", writes),
        caplog.at_level(logging.WARNING, logger="usage.recording"),
    ):
        recording._write_batch([_record("m\x00", "gwreq_dirty")])
    assert writes.call_count == 2  # written, refused; scrubbed, written again, refused
    assert UsageEvent.objects.get().request_id == "gwreq_dirty"
    [dropped] = caplog.records
    assert dropped.levelno == logging.ERROR
    assert (
        dropped.message == "request log: dropped the log of gwreq_dirty, which the database refused"
    )
    assert dropped.exc_info is not None and isinstance(dropped.exc_info[1], DataError)


def test_a_refused_log_with_nothing_to_scrub_is_not_written_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writes = mock.Mock(side_effect=DataError("refused"))
    with (
        mock.patch("requestlog.services.request_logs_write", writes),
        caplog.at_level(logging.WARNING, logger="usage.recording"),
    ):
        recording._write_batch([_record("m", "gwreq_clean")])
    assert writes.call_count == 1
    assert [record.message for record in caplog.records] == [
        "request log: dropped the log of gwreq_clean, which the database refused"
    ]
    assert UsageEvent.objects.count() == 1
