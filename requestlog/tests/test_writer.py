"""Request logs through the usage writer: written beside their events, spooled redacted and
replayed, and never a planted secret in the database, the spool or the log output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from requestlog.capture import LogCapture, ResponseTap, decode_body
from requestlog.models import RequestBody, RequestLog
from requestlog.tests.conftest import database_text
from requestlog.tests.secrets import background_holds, planted_bodies, secret_pieces, secrets
from usage import recording
from usage.models import UsageEvent
from usage.recording import Spool, UsageRecord, UsageWriter

pytestmark = pytest.mark.django_db(transaction=True)


def spool_text(directory: Path) -> str:
    """The spool files as text, with the compressed bodies inside them decompressed."""
    pieces: list[str] = []
    for path in directory.glob("usage-*"):
        for line in path.read_text().splitlines():
            pieces.append(line)
            body = (json.loads(line).get("log") or {}).get("body") or {}
            for name in ("request", "response", "stream"):
                pieces.append(decode_body(body.get(name)))
    return "\n".join(pieces)


def _record(log: Any = None, **overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {"provider": "anthropic", "request_id": "gwreq_abc", "log": log}
    values.update(overrides)
    return UsageRecord(**values)


def _full(body: bytes, answer: bytes, headers: dict[str, str] | None = None) -> LogCapture:
    tap = ResponseTap(10_000_000)
    tap.append(answer)
    return LogCapture(
        level="full",
        surface="messages",
        user_agent="claude-cli/2.1",
        attempts=[{"provider": "anthropic", "model": "m", "outcome": "answered"}],
        request_body=body,
        request_headers=headers or {},
        response=tap,
    )


@pytest.fixture
def writer(tmp_path: Path) -> UsageWriter:
    return UsageWriter(Spool(tmp_path / "spool"))


def test_metadata_log_is_written_with_its_event(writer: UsageWriter) -> None:
    record = _record(LogCapture(level="metadata", surface="chat", attempts=[{"a": 1}]))
    writer.submit(record)
    writer.submit(_record(request_id="gwreq_unlogged"))
    writer.flush_now()
    assert UsageEvent.objects.count() == 2
    log = RequestLog.objects.get()
    assert str(log.event_id) == record.event_id
    assert log.event.request_id == "gwreq_abc" == log.request_id
    assert (log.surface, log.level, log.attempts, log.has_body) == (
        "chat",
        "metadata",
        [{"a": 1}],
        False,
    )
    assert not RequestBody.objects.exists()


def test_full_log_bodies_are_written_redacted(writer: UsageWriter) -> None:
    body = json.dumps({"messages": [{"content": "my key is sk-ant-api03-" + "x" * 30}]}).encode()
    writer.submit(_record(_full(body, b'{"content":[{"type":"text","text":"ok"}]}')))
    writer.flush_now()
    stored = RequestBody.objects.get()
    assert "sk-ant" not in decode_body(stored.request)
    assert json.loads(decode_body(stored.response)) == {"content": [{"type": "text", "text": "ok"}]}
    assert RequestLog.objects.get().has_body


def test_spooled_logs_are_redacted_and_replayed_once(writer: UsageWriter) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    body = json.dumps({"k": secret}).encode()
    with mock.patch.object(recording, "_write_events", side_effect=OperationalError("db away")):
        writer.submit(_record(_full(body, b"{}")))
        writer.flush_now()
    assert UsageEvent.objects.count() == 0
    spooled = spool_text(writer.spool.directory)
    assert secret not in spooled and '"k":"[REDACTED]"' in spooled
    assert writer.spool.replay() == 1
    assert writer.spool.replay() == 0
    assert RequestLog.objects.count() == 1 and RequestBody.objects.count() == 1
    assert secret not in decode_body(RequestBody.objects.get().request)


def test_a_log_that_cannot_be_prepared_does_not_lose_its_event(writer: UsageWriter) -> None:
    with mock.patch("requestlog.services.log_prepare", side_effect=RuntimeError("bug")):
        writer.submit(_record(LogCapture(level="metadata")))
        writer.flush_now()
    assert UsageEvent.objects.count() == 1
    assert not RequestLog.objects.exists()


def test_a_replayed_batch_writes_no_second_log(tmp_path: Path) -> None:
    record = _record(_full(b'{"a":1}', b"{}"))
    recording._write_batch([record])
    spool = Spool(tmp_path / "spool")
    spool.append([record, record])
    assert spool.replay() == 2
    assert RequestLog.objects.count() == 1 and RequestBody.objects.count() == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    planted=planted_bodies(), header_secret=secrets(), answer_secret=secrets(), spool=st.booleans()
)
def test_no_planted_secret_reaches_database_spool_or_logs(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    planted: tuple[Any, list[str], Any],
    header_secret: str,
    answer_secret: str,
    spool: bool,
) -> None:
    body, planted_secrets, background = planted
    assume(not any(background_holds(background, secret) for secret in planted_secrets))
    every = [*planted_secrets, header_secret, answer_secret]
    RequestLog.objects.all().delete()
    UsageEvent.objects.all().delete()
    writer = UsageWriter(Spool(tmp_path / f"spool-{len(list(tmp_path.iterdir()))}"))
    answer = json.dumps({"content": [{"type": "text", "text": f"x {answer_secret} y"}]}).encode()
    capture = _full(
        json.dumps(body, ensure_ascii=False).encode(),
        answer,
        headers={"authorization": header_secret, "user-agent": f"cli {header_secret} 1"},
    )
    capture.user_agent = f"cli {header_secret} 1"
    record = _record(
        capture, requested_model=f"m {planted_secrets[0]}", session_id=header_secret[:100]
    )
    with caplog.at_level(logging.DEBUG):
        if spool:
            with mock.patch.object(recording, "_write_events", side_effect=OperationalError("x")):
                writer.submit(record)
                writer.flush_now()
            spooled = spool_text(writer.spool.directory)
            assert "[REDACTED]" in spooled
            for secret in every:
                for piece in secret_pieces(secret):
                    assert piece not in spooled
            writer.spool.replay()
        else:
            writer.submit(record)
            writer.flush_now()
    assert RequestBody.objects.count() == 1
    stored = database_text()
    logged = caplog.text
    for secret in every:
        for piece in secret_pieces(secret):
            assert piece not in stored
            assert piece not in logged
