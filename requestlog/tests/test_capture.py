"""Capture on the response path (ProxyContext) and preparation in the writer (log_prepare):
levels, attempts, taps, truncation with markers, bodies that are not JSON, reassembly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accounts.metadata import KeyMetadata
from proxy.context import ProxyContext
from proxy.testing.metadata import key_metadata
from requestlog import capture as capture_module
from requestlog.capture import (
    TRUNCATED_MARKER,
    LogCapture,
    ResponseTap,
    decode_body,
    log_prepare,
    reserve,
)
from requestlog.redaction import MASK
from usage.recording import UsageRecord


def _metadata() -> KeyMetadata:
    return key_metadata(key_id=7, user_id=3, prefix="gw_abcdefgh")


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[UsageRecord]:
    records: list[UsageRecord] = []
    monkeypatch.setattr("proxy.context.record_usage_event", records.append)
    return records


def _context(level: str) -> ProxyContext:
    context = ProxyContext(metadata=_metadata(), request_id="gwreq_1", log_level=level)
    context.capture_request(
        surface="messages",
        body=b'{"model":"m","messages":[]}',
        headers={"x-api-key": "sk-ant-api03-" + "k" * 30},
        user_agent="claude-cli/2.1",
    )
    return context


def test_level_off_records_usage_only(queued: list[UsageRecord]) -> None:
    context = _context("off")
    context.attempt_started(provider="anthropic", model="m", credential="secret")
    assert context.attempts == [] and context.response_tap is None
    context.record(provider="anthropic", status=200)
    assert queued[0].log is None


def test_level_metadata_keeps_attempts_but_no_bodies(queued: list[UsageRecord]) -> None:
    context = _context("metadata")
    assert context.request_body is None and context.response_tap is None
    context.attempt_started(provider="anthropic", model="claude", credential="sk-ant-first")
    context.attempt_ended(outcome="anthropic_529", status=None)
    context.attempt_started(provider="bedrock", model="global.claude", credential="bedrock-key")
    context.record(provider="bedrock", status=200)
    context.record(provider="bedrock", status=500)  # idempotent
    assert len(queued) == 1
    log = queued[0].log
    assert isinstance(log, LogCapture)
    assert [a["outcome"] for a in log.attempts] == ["anthropic_529", "answered"]
    assert log.attempts[1]["status"] == 200
    assert all("started" not in a and "latency_ms" in a for a in log.attempts)
    assert log.credential_fingerprint == log.attempts[1]["credential"]
    assert "bedrock-key" not in json.dumps(log.attempts)
    assert len(log.credential_fingerprint) == 12
    prepared = log_prepare(log)
    assert prepared["body"] is None and prepared["surface"] == "messages"
    assert prepared["user_agent"] == "claude-cli/2.1"


def test_level_full_taps_the_answer_by_reference(queued: list[UsageRecord]) -> None:
    context = _context("full")
    chunk = b'{"type":"message","content":[]}'
    context.tap(chunk)
    assert context.response_tap is not None and context.response_tap.chunks[0] is chunk
    context.record(provider="anthropic", status=200)
    prepared = log_prepare(queued[0].log)
    body = prepared["body"]
    assert body["request_headers"] == {"x-api-key": MASK}
    assert json.loads(decode_body(body["request"])) == {"model": "m", "messages": []}
    assert json.loads(decode_body(body["response"])) == {"type": "message", "content": []}
    assert body["notes"] == []


def test_tap_keeps_at_most_its_cap() -> None:
    tap = ResponseTap(10)
    for _ in range(5):
        tap.append(b"abcdef")
    assert tap.kept == 12 and tap.truncated and len(tap.chunks) == 2


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 5000, 40_000, 300_000])
def test_a_body_of_any_size_is_stored_whole_and_compressed(size: int, settings: Any) -> None:
    """The compressor's window follows the body's size (up to zlib's largest): every size
    reads back whole, and a body that repeats itself is stored smaller."""
    settings.GATEWAY_LOG_BODY_MAX_BYTES = 1_000_000
    words = "".join(f"word{index % 97} é " for index in range(size))[:size]
    prepared = log_prepare(
        LogCapture(level="full", request_body=words.encode(), request_headers={})
    )
    stored = prepared["body"]["request"]
    assert decode_body(stored) == words
    if size >= 5000:
        assert len(stored) < len(words.encode()) / 3


def test_large_and_non_json_bodies_are_stored_truncated_and_marked(settings: Any) -> None:
    settings.GATEWAY_LOG_BODY_MAX_BYTES = 2000
    secret = "sk-ant-api03-" + "s" * 40
    big = json.dumps({"messages": [{"content": "x" * 5000 + " " + secret}]}).encode()
    tap = ResponseTap(100_000)
    tap.append(b"not json at all " + secret.encode() + b" " + b"y" * 5000)
    prepared = log_prepare(
        LogCapture(level="full", request_body=big, request_headers={}, response=tap)
    )
    body = prepared["body"]
    request = decode_body(body["request"])
    response = decode_body(body["response"])
    assert request.endswith(TRUNCATED_MARKER) and response.endswith(TRUNCATED_MARKER)
    assert len(request) <= 2000 + len(TRUNCATED_MARKER)
    assert secret not in request + response and "sk-ant" not in response
    assert set(body["notes"]) == {"request_truncated", "response_not_json", "response_truncated"}


def test_a_secret_cut_by_the_cap_leaves_no_fragment(settings: Any) -> None:
    settings.GATEWAY_LOG_BODY_MAX_BYTES = 1024
    secret = "AKIA" + "B" * 16
    text = "z " * 508 + secret  # the cap falls inside the key
    prepared = log_prepare(LogCapture(level="full", request_body=text.encode(), request_headers={}))
    stored = decode_body(prepared["body"]["request"])
    assert "AKIA" not in stored and "BBBB" not in stored


def test_the_process_budget_drops_bodies_instead_of_growing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture_module, "_QUEUE_BUDGET", 100)
    first = LogCapture(level="full", request_body=b"x" * 80, request_headers={})
    second = LogCapture(level="full", request_body=b"y" * 80, request_headers={})
    reserve(first)
    reserve(second)
    assert first.request_body is not None and not first.dropped
    assert second.request_body is None and second.dropped
    assert "bodies_dropped_writer_behind" in log_prepare(second)["body"]["notes"]
    log_prepare(first)
    assert capture_module.queued_bytes() == 0


def test_a_streamed_answer_is_stored_reassembled_and_raw() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message",
         "role": "assistant", "model": "m", "content": [], "stop_reason": None,
         "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "lo bob@example.com"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
         "stop_sequence": None}, "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    tap = ResponseTap(100_000)
    for name, data in events:
        tap.append(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    prepared = log_prepare(
        LogCapture(level="full", surface="messages", streamed=True, response=tap)
    )
    message = json.loads(decode_body(prepared["body"]["response"]))
    assert message["content"] == [{"type": "text", "text": f"Hello {MASK}"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 5, "output_tokens": 2}
    raw = decode_body(prepared["body"]["stream"])
    assert raw.startswith("event: message_start") and "bob@example.com" not in raw
