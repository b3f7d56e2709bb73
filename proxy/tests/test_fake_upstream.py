"""Tests of the fake upstream: its wire formats are checked with the real client libraries
(anthropic SDK, botocore's eventstream decoder and bedrock-runtime client), then its faults,
request recording and connection accounting with httpx.
"""

from __future__ import annotations

import base64
import json
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import botocore.session
import httpx
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from botocore.config import Config as BotocoreConfig
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer, split_text
from proxy.testing.eventstream import (
    encode_frame,
    encode_headers,
    error_frame,
    event_frame,
    exception_frame,
)
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import (
    AnthropicStreamError,
    BedrockStreamException,
    Delay,
    DropConnection,
    HttpError,
    StreamCut,
)
from proxy.testing.records import Pacing, route_request

# The shared fixtures, registered here under their own names (`fake_upstream`, ...) without
# binding those names in this module.
_fixture_server = fixtures.fake_upstream_server
_fixture_fake = fixtures.fake_upstream
_fixture_settings = fixtures.fake_upstream_settings

MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REPO_ROOT = Path(__file__).resolve().parents[2]

RICH_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBsig=="},
        {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
        {"type": "text", "text": "Checking the weather in Paris for you."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
    ],
    stop_reason="tool_use",
    usage={
        "input_tokens": 12,
        "output_tokens": 40,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 7,
    },
    model="claude-sonnet-4-6",
)

MESSAGES_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
}


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE body into (event, data) pairs, checking `type` matches the event name."""
    events = []
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append((lines["event"], data))
    return events


def decode_frames(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(message.headers, message.payload) for message in buffer]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# One botocore session for the module: each new session would load the service model again.
BOTOCORE_SESSION = botocore.session.get_session()


@pytest.fixture
def bedrock(fake_upstream: FakeUpstream) -> Any:
    return BOTOCORE_SESSION.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=fake_upstream.base_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=BotocoreConfig(retries={"mode": "standard", "total_max_attempts": 1}),
    )


@pytest.fixture
def sdk(fake_upstream: FakeUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake_upstream.base_url, api_key="x", max_retries=0)


# --- eventstream encoder -------------------------------------------------------------------------


def test_botocore_decodes_frames_fed_in_odd_pieces() -> None:
    frames = [
        encode_frame({":event-type": "chunk", "x-custom": "välue"}, b'{"a":1}'),
        event_frame("contentBlockDelta", b'{"contentBlockIndex":0}'),
        exception_frame("throttlingException", b'{"message":"slow down"}'),
        error_frame("InternalFailure", "broken"),
    ]
    raw = b"".join(frames)
    buffer = EventStreamBuffer()
    decoded = []
    for start in range(0, len(raw), 7):
        buffer.add_data(raw[start : start + 7])
        decoded.extend(buffer)
    assert [message.headers for message in decoded] == [
        {":event-type": "chunk", "x-custom": "välue"},
        {
            ":event-type": "contentBlockDelta",
            ":content-type": "application/json",
            ":message-type": "event",
        },
        {
            ":exception-type": "throttlingException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        {":error-code": "InternalFailure", ":error-message": "broken", ":message-type": "error"},
    ]
    assert [message.payload for message in decoded] == [
        b'{"a":1}',
        b'{"contentBlockIndex":0}',
        b'{"message":"slow down"}',
        b"",
    ]


def test_frame_layout_lengths() -> None:
    frame = encode_frame({"k": "v"}, b"payload")
    total_length, headers_length = struct.unpack("!II", frame[:8])
    assert total_length == len(frame)
    assert headers_length == len(encode_headers({"k": "v"})) == 1 + 1 + 1 + 2 + 1


@pytest.mark.parametrize("corrupt_at", [5, 20, -2], ids=["prelude", "payload", "message-crc"])
def test_botocore_detects_a_corrupted_frame(corrupt_at: int) -> None:
    frame = bytearray(event_frame("chunk", b'{"bytes":"eyJ0eXBlIjoicGluZyJ9"}'))
    frame[corrupt_at] ^= 0x01
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    # A flipped length byte can also surface as another ParserError subclass; pin the CRC ones.
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_encoder_refuses_bad_headers() -> None:
    with pytest.raises(ValueError, match="1-255 bytes"):
        encode_headers({"x" * 256: "v"})
    with pytest.raises(ValueError, match="1-255 bytes"):
        encode_headers({"": "v"})
    with pytest.raises(ValueError, match="too long"):
        encode_headers({"k": "v" * 70_000})


# --- answers -------------------------------------------------------------------------------------


def test_split_text_keeps_text_and_bounds_pieces() -> None:
    assert split_text("abcdefghij", 3) == ["abcd", "efg", "hij"]
    assert split_text("ab", 5) == ["a", "b"]
    assert split_text("", 4) == [""]
    assert "".join(split_text("héllo wörld", 4)) == "héllo wörld"


def test_scripted_answer_rejects_malformed_blocks() -> None:
    with pytest.raises(ValueError, match="unsupported block type 'image'"):
        ScriptedAnswer(content=[{"type": "image"}])
    with pytest.raises(ValueError, match=r"content\[0\] \(thinking\) lacks signature"):
        ScriptedAnswer(content=[{"type": "thinking", "thinking": "hm"}])


def test_route_request() -> None:
    assert route_request("POST", "/v1/messages").endpoint == "messages"  # type: ignore[union-attr]
    route = route_request("POST", "/model/us.anthropic.claude-x-v1%3A0/converse-stream")
    assert route is not None
    assert (route.upstream, route.endpoint, route.model_id) == (
        "bedrock",
        "converse-stream",
        "us.anthropic.claude-x-v1:0",
    )
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x"
    assert route_request("POST", f"/model/{arn}/invoke").model_id == (  # type: ignore[union-attr]
        "arn:aws:bedrock:us-east-1:1:inference-profile/us.x"
    )
    assert route_request("GET", "/v1/messages") is None
    assert route_request("POST", "/model/x/delete") is None
    assert route_request("POST", "/model//converse") is None


# --- Anthropic through the official SDK ----------------------------------------------------------


def test_sdk_create_returns_the_scripted_message(
    fake_upstream: FakeUpstream,
    sdk: anthropic.Anthropic,
) -> None:
    fake_upstream.answer = RICH_ANSWER
    message = sdk.messages.create(**MESSAGES_BODY)
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert message.stop_reason == "tool_use"
    assert message.stop_sequence is None
    assert [block.to_dict() for block in message.content] == RICH_ANSWER.content
    assert message.usage.input_tokens == 12
    assert message.usage.output_tokens == 40
    assert message.usage.cache_read_input_tokens == 1000
    assert message.usage.cache_creation_input_tokens == 7


@pytest.mark.parametrize(
    "answer",
    [
        RICH_ANSWER,
        ScriptedAnswer.text(
            "Stopped early",
            stop_reason="stop_sequence",
            stop_sequence="END",
            usage={"output_tokens": 3},
        ),
        ScriptedAnswer(content=[], stop_reason="max_tokens", usage={"input_tokens": 5}),
        ScriptedAnswer(
            content=[{"type": "text", "text": "cached"}],
            usage={
                "input_tokens": 3,
                "output_tokens": 1,
                "cache_creation_input_tokens": 10,
                "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
                "service_tier": "standard",
            },
        ),
    ],
    ids=["rich", "stop-sequence", "empty", "cache-breakdown"],
)
def test_sdk_stream_final_message_equals_create(
    fake_upstream: FakeUpstream,
    sdk: anthropic.Anthropic,
    answer: ScriptedAnswer,
) -> None:
    fake_upstream.answer = answer
    created = sdk.messages.create(**MESSAGES_BODY)
    with sdk.messages.stream(**MESSAGES_BODY) as stream:
        streamed = stream.get_final_message()
    # Every field of the accumulated stream equals the JSON answer, the id aside.
    assert streamed.model_dump(exclude={"id"}) == created.model_dump(exclude={"id"})
    assert streamed.usage.model_dump() == created.usage.model_dump()
    assert [block.type for block in streamed.content] == [block["type"] for block in answer.content]
    assert streamed.id != created.id  # each response has its own id


def test_anthropic_sse_event_sequence(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.answer = RICH_ANSWER
    response = http.post(
        f"{fake_upstream.base_url}/v1/messages", json={**MESSAGES_BODY, "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"].startswith("req_")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    deltas_by_index: dict[int, list[dict[str, Any]]] = {}
    for name, data in events:
        if name == "content_block_delta":
            deltas_by_index.setdefault(data["index"], []).append(data["delta"])
    thinking = deltas_by_index[0]
    assert [delta["type"] for delta in thinking][-1] == "signature_delta"
    assert len([delta for delta in thinking if delta["type"] == "thinking_delta"]) > 1
    assert 1 not in deltas_by_index  # redacted thinking arrives whole in content_block_start
    assert len(deltas_by_index[2]) > 1  # text is split over several deltas
    assert "".join(delta["partial_json"] for delta in deltas_by_index[3]) == '{"city": "Paris"}'
    assert [delta["partial_json"] for delta in deltas_by_index[4]] == [""]
    message_delta = events[-2][1]
    assert message_delta["usage"] == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 1000,
        "output_tokens": 40,
    }
    assert message_delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_scripted_start_and_delta_usage(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.answer = ScriptedAnswer.text(
        "hi",
        usage={"input_tokens": 9, "output_tokens": 2},
        start_usage={"input_tokens": 9, "output_tokens": 0},
        delta_usage={"output_tokens": 2},
    )
    response = http.post(
        f"{fake_upstream.base_url}/v1/messages", json={**MESSAGES_BODY, "stream": True}
    )
    events = dict(sse_events(response.text))
    assert events["message_start"]["message"]["usage"] == {"input_tokens": 9, "output_tokens": 0}
    assert events["message_delta"]["usage"] == {"output_tokens": 2}


def test_answers_queue_before_the_standing_answer(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.answer = ScriptedAnswer.text("standing")
    fake_upstream.queue_answers(ScriptedAnswer.text("first"), ScriptedAnswer.text("second"))
    url = f"{fake_upstream.base_url}/v1/messages"
    texts = [http.post(url, json=MESSAGES_BODY).json()["content"][0]["text"] for _ in range(4)]
    assert texts == ["first", "second", "standing", "standing"]


def test_count_tokens_and_models(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    base = fake_upstream.base_url
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    assert http.post(f"{base}/v1/messages/count_tokens", json=body).json()["input_tokens"] > 90
    fake_upstream.count_tokens_result = 1234
    assert http.post(f"{base}/v1/messages/count_tokens", json=body).json() == {"input_tokens": 1234}

    page = http.get(f"{base}/v1/models").json()
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    ids = [model["id"] for model in page["data"]]
    assert page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
    assert all(model["type"] == "model" for model in page["data"])
    first = http.get(f"{base}/v1/models", params={"limit": 1}).json()
    assert first["data"][0]["id"] == ids[0] and first["has_more"] is True
    rest = http.get(f"{base}/v1/models", params={"after_id": ids[0], "limit": 5}).json()
    assert [model["id"] for model in rest["data"]] == ids[1:] and rest["has_more"] is False
    before = http.get(f"{base}/v1/models", params={"before_id": ids[-1], "limit": 1}).json()
    assert before["first_id"] == ids[-2] and before["has_more"] is True


def test_sdk_models_and_count_tokens(
    fake_upstream: FakeUpstream,
    sdk: anthropic.Anthropic,
) -> None:
    fake_upstream.count_tokens_result = 42
    counted = sdk.messages.count_tokens(model="m", messages=MESSAGES_BODY["messages"])
    assert counted.input_tokens == 42
    assert [model.id for model in sdk.models.list()] == [
        model["id"] for model in fake_upstream.models
    ]


# --- Bedrock through botocore --------------------------------------------------------------------


def test_botocore_converse(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.answer = RICH_ANSWER
    response = bedrock.converse(
        modelId=MODEL_ID,
        messages=[{"role": "user", "content": [{"text": "Weather?"}]}],
        additionalModelResponseFieldPaths=["/stop_sequence"],
    )
    assert response["output"]["message"] == {
        "role": "assistant",
        "content": [
            {
                "reasoningContent": {
                    "reasoningText": {
                        "text": "The user wants the weather.",
                        "signature": "EqQBsig==",
                    }
                }
            },
            {"reasoningContent": {"redactedContent": b"redacted"}},
            {"text": "Checking the weather in Paris for you."},
            {
                "toolUse": {
                    "toolUseId": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            },
            {"toolUse": {"toolUseId": "toolu_01B", "name": "get_time", "input": {}}},
        ],
    }
    assert response["stopReason"] == "tool_use"
    assert response["usage"] == {
        "inputTokens": 12,
        "outputTokens": 40,
        "totalTokens": 1059,
        "cacheReadInputTokens": 1000,
        "cacheWriteInputTokens": 7,
    }
    assert response["additionalModelResponseFields"] == {"stop_sequence": None}
    assert response["metrics"]["latencyMs"] >= 1
    request = fake_upstream.last_request
    assert request.upstream == "bedrock" and request.endpoint == "converse"
    assert request.raw_path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert request.model_id == MODEL_ID


def test_converse_stop_reason_mapping_and_cache_details(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    url = f"{fake_upstream.base_url}/model/m/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "q"}]}]}
    fake_upstream.answer = ScriptedAnswer.text("no", stop_reason="refusal")
    plain = http.post(url, json=body).json()
    assert plain["stopReason"] == "content_filtered"
    assert plain["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    assert "additionalModelResponseFields" not in plain
    fake_upstream.answer = ScriptedAnswer.text(
        "ok",
        converse_stop_reason="guardrail_intervened",
        usage={
            "cache_creation_input_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
        },
    )
    cached = http.post(url, json=body).json()
    assert cached["stopReason"] == "guardrail_intervened"
    assert cached["usage"]["cacheDetails"] == [
        {"ttl": "5m", "inputTokens": 4},
        {"ttl": "1h", "inputTokens": 6},
    ]


def test_botocore_converse_stream(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.answer = RICH_ANSWER
    response = bedrock.converse_stream(
        modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Weather?"}]}]
    )
    events = [next(iter(event.items())) for event in response["stream"]]
    names = [name for name, _ in events]
    assert names[0] == "messageStart"
    assert names[-2:] == ["messageStop", "metadata"]
    starts = [
        payload["contentBlockIndex"] for name, payload in events if name == "contentBlockStart"
    ]
    assert starts == [3, 4]  # only toolUse blocks get a start event
    deltas: dict[int, list[dict[str, Any]]] = {}
    for name, payload in events:
        if name == "contentBlockDelta":
            deltas.setdefault(payload["contentBlockIndex"], []).append(payload["delta"])
    assert deltas[0][-1] == {"reasoningContent": {"signature": "EqQBsig=="}}
    assert "".join(d["reasoningContent"]["text"] for d in deltas[0][:-1]) == (
        "The user wants the weather."
    )
    assert deltas[1] == [{"reasoningContent": {"redactedContent": b"redacted"}}]
    assert len(deltas[2]) > 1
    assert "".join(delta["text"] for delta in deltas[2]) == "Checking the weather in Paris for you."
    assert json.loads("".join(d["toolUse"]["input"] for d in deltas[3])) == {"city": "Paris"}
    assert 4 not in deltas  # a tool called without arguments sends no input delta
    stops = [payload["contentBlockIndex"] for name, payload in events if name == "contentBlockStop"]
    assert stops == [0, 1, 2, 3, 4]
    assert events[-2][1] == {"stopReason": "tool_use"}
    assert events[-1][1]["usage"]["cacheReadInputTokens"] == 1000


def test_converse_stream_frames_carry_padding(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    response = http.post(
        f"{fake_upstream.base_url}/model/m/converse-stream",
        json={
            "messages": [{"role": "user", "content": [{"text": "q"}]}],
            "additionalModelResponseFieldPaths": ["/stop_sequence"],
        },
    )
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert response.headers["x-amzn-requestid"]
    frames = decode_frames(response.content)
    for headers, payload in frames:
        assert headers[":message-type"] == "event"
        assert headers[":content-type"] == "application/json"
        assert isinstance(json.loads(payload)["p"], str)
    message_stop = next(json.loads(p) for h, p in frames if h[":event-type"] == "messageStop")
    assert message_stop["additionalModelResponseFields"] == {"stop_sequence": None}


def test_botocore_invoke_model(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.answer = RICH_ANSWER
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": []}
    response = bedrock.invoke_model(modelId=MODEL_ID, body=json.dumps(body))
    message = json.loads(response["body"].read())
    assert message["id"].startswith("msg_bdrk_")
    assert message["content"] == RICH_ANSWER.content
    assert message["usage"]["cache_read_input_tokens"] == 1000
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == "12"
    assert headers["x-amzn-bedrock-output-token-count"] == "40"


def test_botocore_invoke_stream_chunks_rebuild_the_invoke_message(
    fake_upstream: FakeUpstream,
    bedrock: Any,
) -> None:
    fake_upstream.answer = RICH_ANSWER
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": []})
    whole = json.loads(bedrock.invoke_model(modelId=MODEL_ID, body=body)["body"].read())
    response = bedrock.invoke_model_with_response_stream(modelId=MODEL_ID, body=body)
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    assert [chunk["type"] for chunk in chunks][:2] == ["message_start", "content_block_start"]
    assert "ping" not in [chunk["type"] for chunk in chunks]
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert chunks[-1]["type"] == "message_stop"
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (12, 40)
    assert metrics["cacheReadInputTokenCount"] == 1000
    snapshot = None
    json_buffers: dict[int, bytes] = {}
    for chunk in chunks:
        snapshot = accumulate_event(event=chunk, current_snapshot=snapshot, json_bufs=json_buffers)
    assert snapshot is not None
    assert [block.to_dict() for block in snapshot.content] == whole["content"]
    assert snapshot.usage.to_dict() == whole["usage"]
    assert snapshot.stop_reason == whole["stop_reason"]


def test_invoke_stream_wire_format(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    response = http.post(
        f"{fake_upstream.base_url}/model/m/invoke-with-response-stream",
        json={"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []},
    )
    assert response.headers["x-amzn-bedrock-content-type"] == "application/json"
    for headers, payload in decode_frames(response.content):
        assert headers[":event-type"] == "chunk"
        decoded = json.loads(payload)
        assert set(decoded) == {"bytes", "p"}
        assert "type" in json.loads(base64.b64decode(decoded["bytes"]))


def test_botocore_count_tokens(fake_upstream: FakeUpstream, bedrock: Any) -> None:
    fake_upstream.count_tokens_result = 77
    counted = bedrock.count_tokens(
        modelId=MODEL_ID,
        input={"converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}},
    )
    assert counted["inputTokens"] == 77
    assert fake_upstream.last_request.endpoint == "count-tokens"


# --- default answers and pacing ------------------------------------------------------------------


def test_default_answers_follow_each_concurrent_request(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    url = f"{fake_upstream.base_url}/v1/messages"

    def ask(number: int) -> str:
        body = {**MESSAGES_BODY, "messages": [{"role": "user", "content": f"question {number}"}]}
        return http.post(url, json=body).json()["content"][0]["text"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(ask, range(16)))
    assert texts == [f"Fake answer to: question {number}" for number in range(16)]


def test_default_answer_from_converse_content_blocks(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "first"}]},
            {"role": "assistant", "content": [{"text": "ok"}]},
            {"role": "user", "content": [{"image": {}}, {"text": "second"}]},
        ]
    }
    response = http.post(f"{fake_upstream.base_url}/model/m/converse", json=body).json()
    assert response["output"]["message"]["content"] == [{"text": "Fake answer to: second"}]
    assert response["usage"]["inputTokens"] == len(json.dumps(body, separators=(",", ":"))) // 4


def test_pacing_header_sets_the_number_of_text_deltas(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    response = http.post(
        f"{fake_upstream.base_url}/v1/messages",
        json={**MESSAGES_BODY, "stream": True},
        headers={"x-fake-text-deltas": "25", "x-fake-delta-interval-ms": "0"},
    )
    events = sse_events(response.text)
    deltas = [data for name, data in events if name == "content_block_delta"]
    assert len(deltas) == 25
    assert events[-2][1]["usage"]["output_tokens"] == 25


def test_pacing_marker_in_the_prompt_reaches_bedrock_streams(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "go [[fake text_deltas=12]]"}]}]}
    response = http.post(f"{fake_upstream.base_url}/model/m/converse-stream", json=body)
    frames = decode_frames(response.content)
    deltas = [json.loads(p) for h, p in frames if h[":event-type"] == "contentBlockDelta"]
    assert len(deltas) == 12
    text = "".join(delta["delta"]["text"] for delta in deltas)
    assert text.startswith("Fake answer to: go w") and "[[fake" not in text


def test_scripted_pacing_applies_to_invoke_streams(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.pacing = Pacing(text_deltas=6)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []}
    response = http.post(f"{fake_upstream.base_url}/model/m/invoke-with-response-stream", json=body)
    chunks = [
        json.loads(base64.b64decode(json.loads(payload)["bytes"]))
        for _, payload in decode_frames(response.content)
    ]
    assert len([chunk for chunk in chunks if chunk["type"] == "content_block_delta"]) == 6


@pytest.mark.parametrize(
    ("headers", "prompt", "message"),
    [
        ({"x-fake-text-deltas": "0"}, "hi", "at least 1"),
        ({"x-fake-delta-interval-ms": "soon"}, "hi", "number of milliseconds"),
        ({}, "[[fake speed=9]]", "unknown pacing option"),
    ],
)
def test_bad_pacing_is_a_400(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
    headers: dict[str, str],
    prompt: str,
    message: str,
) -> None:
    body = {**MESSAGES_BODY, "messages": [{"role": "user", "content": prompt}]}
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=body, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_unknown_route_and_invalid_bodies(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    base = fake_upstream.base_url
    missing = http.get(f"{base}/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    not_json = http.post(f"{base}/v1/messages", content=b"{oops")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    bedrock_list = http.post(f"{base}/model/m/converse", json=[1, 2])
    assert bedrock_list.status_code == 400
    assert bedrock_list.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert bedrock_list.json() == {"message": "request body must be a JSON object"}


# --- faults --------------------------------------------------------------------------------------


def test_anthropic_http_error_with_rate_limit_headers(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
    sdk: anthropic.Anthropic,
) -> None:
    fake_upstream.add_fault(
        "anthropic",
        HttpError(
            status=429,
            message="Number of requests has exceeded your rate limit",
            headers={
                "retry-after": "17",
                "anthropic-ratelimit-unified-5h-reset": "1790000000",
                "request-id": "req_pinned",
            },
        ),
    )
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert response.headers["anthropic-ratelimit-unified-5h-reset"] == "1790000000"
    assert response.headers["request-id"] == "req_pinned"
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {
        "type": "rate_limit_error",
        "message": "Number of requests has exceeded your rate limit",
    }
    fake_upstream.add_fault("anthropic", HttpError(status=529))
    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk.messages.create(**MESSAGES_BODY)
    assert raised.value.status_code == 529
    assert raised.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert sdk.messages.create(**MESSAGES_BODY).content  # the queue is empty again


def test_bedrock_http_errors_reach_botocore_as_typed_exceptions(
    fake_upstream: FakeUpstream,
    bedrock: Any,
) -> None:
    fake_upstream.add_fault(
        "bedrock", HttpError(status=429, message="Too many tokens"), HttpError(status=503)
    )
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with pytest.raises(bedrock.exceptions.ThrottlingException) as throttled:
        bedrock.converse(modelId=MODEL_ID, messages=messages)
    assert throttled.value.response["Error"]["Message"] == "Too many tokens"
    with pytest.raises(ClientError) as unavailable:
        bedrock.converse(modelId=MODEL_ID, messages=messages)
    assert unavailable.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert unavailable.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    raw = fake_upstream.requests[-1]
    assert raw.status == 503 and isinstance(raw.fault, HttpError)


def test_http_error_with_raw_body(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.add_fault("anthropic", HttpError(status=502, body=b"<html>bad gateway</html>"))
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    assert (response.status_code, response.content) == (502, b"<html>bad gateway</html>")


def test_slow_first_byte_then_an_answer(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.add_fault("anthropic", Delay(delay=0.05))
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    assert response.status_code == 200
    assert isinstance(fake_upstream.last_request.fault, Delay)


def test_slow_first_byte_trips_a_client_timeout_and_the_disconnect_is_seen(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.add_fault("anthropic", HttpError(status=429, delay=60))
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            f"{fake_upstream.base_url}/v1/messages",
            json=MESSAGES_BODY,
            timeout=httpx.Timeout(5.0, read=0.2),
        )
    abandoned = fake_upstream.wait_for_disconnect()
    assert abandoned.status is None  # nothing was sent
    assert abandoned.outcome == "client_disconnected"
    assert abandoned.client_disconnected_at is not None
    assert abandoned.client_disconnected_at >= abandoned.started_at
    fake_upstream.wait_idle()


def test_drop_connection(http: httpx.Client, fake_upstream: FakeUpstream) -> None:
    fake_upstream.add_fault("anthropic", DropConnection())
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    fake_upstream.wait_idle()
    request = fake_upstream.last_request
    assert request.outcome == "server_closed"
    assert request.status is None and not request.abandoned


def test_anthropic_stream_cut_after_k_events(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.add_fault("anthropic", StreamCut(after_events=3))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", f"{fake_upstream.base_url}/v1/messages", json={**MESSAGES_BODY, "stream": True}
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
    assert [name for name, _ in sse_events(received.decode())] == [
        "message_start",
        "content_block_start",
        "ping",
    ]
    fake_upstream.wait_idle()
    assert fake_upstream.last_request.outcome == "server_closed"
    assert fake_upstream.last_request.events_sent == 3


def test_bedrock_stream_cut_leaves_whole_frames_only(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.add_fault("bedrock", StreamCut(after_events=2))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", f"{fake_upstream.base_url}/model/m/converse-stream", json={"messages": []}
        ) as response,
    ):
        for chunk in response.iter_bytes():
            received += chunk
    assert [h[":event-type"] for h, _ in decode_frames(received)] == [
        "messageStart",
        "contentBlockDelta",
    ]


def test_anthropic_mid_stream_error_event(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
    sdk: anthropic.Anthropic,
) -> None:
    fake_upstream.add_fault("anthropic", AnthropicStreamError(after_events=4))
    response = http.post(
        f"{fake_upstream.base_url}/v1/messages", json={**MESSAGES_BODY, "stream": True}
    )
    events = sse_events(response.text)
    assert len(events) == 5
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    fake_upstream.add_fault(
        "anthropic", AnthropicStreamError(after_events=2, error_type="api_error", message="boom")
    )
    with (
        pytest.raises(anthropic.APIStatusError, match="boom"),
        sdk.messages.stream(**MESSAGES_BODY) as stream,
    ):
        stream.get_final_message()


def test_bedrock_mid_stream_exception_frame(
    http: httpx.Client,
    fake_upstream: FakeUpstream,
    bedrock: Any,
) -> None:
    fake_upstream.add_fault(
        "bedrock",
        BedrockStreamException(
            after_events=3,
            exception_type="modelStreamErrorException",
            message="model failed",
            original_status_code=500,
        ),
    )
    response = http.post(f"{fake_upstream.base_url}/model/m/converse-stream", json={"messages": []})
    frames = decode_frames(response.content)
    assert len(frames) == 4
    headers, payload = frames[-1]
    assert headers == {
        ":exception-type": "modelStreamErrorException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert json.loads(payload) == {
        "message": "model failed",
        "originalStatusCode": 500,
        "originalMessage": "model failed",
    }
    fake_upstream.add_fault("bedrock", BedrockStreamException(after_events=1))
    stream = bedrock.converse_stream(modelId=MODEL_ID, messages=[])["stream"]
    with pytest.raises(EventStreamError) as raised:
        list(stream)
    assert raised.value.response["Error"]["Code"] == "throttlingException"


def test_mid_stream_fault_after_the_last_event(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.add_fault("bedrock", BedrockStreamException(after_events=10_000))
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []}
    response = http.post(f"{fake_upstream.base_url}/model/m/invoke-with-response-stream", json=body)
    frames = decode_frames(response.content)
    assert frames[-1][0][":message-type"] == "exception"
    last_chunk = json.loads(base64.b64decode(json.loads(frames[-2][1])["bytes"]))
    assert last_chunk["type"] == "message_stop"


def test_fault_queue_order_default_and_matching(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    base = fake_upstream.base_url
    fake_upstream.add_fault(
        "anthropic",
        StreamCut(after_events=1),  # streaming only: skipped by the JSON requests below
        HttpError(status=500, endpoint="count_tokens"),
        HttpError(status=401),
        HttpError(status=403),
    )
    fake_upstream.set_default_fault("anthropic", HttpError(status=529, endpoint="messages"))
    assert http.post(f"{base}/v1/messages", json=MESSAGES_BODY).status_code == 401
    assert http.get(f"{base}/v1/models").status_code == 403
    assert http.post(f"{base}/v1/messages", json=MESSAGES_BODY).status_code == 529
    assert http.post(f"{base}/v1/messages/count_tokens", json=MESSAGES_BODY).status_code == 500
    assert http.post(f"{base}/v1/messages/count_tokens", json=MESSAGES_BODY).status_code == 200
    assert http.post(f"{base}/model/m/converse", json={"messages": []}).status_code == 200
    assert [type(fault) for fault in fake_upstream.faults["anthropic"].pending()] == [StreamCut]
    fake_upstream.set_default_fault("anthropic", None)
    assert http.post(f"{base}/v1/messages", json=MESSAGES_BODY).status_code == 200


def test_faults_are_checked_against_their_upstream(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="anthropic fault"):
        fake_upstream.add_fault("bedrock", AnthropicStreamError())
    with pytest.raises(ValueError, match="bedrock fault"):
        fake_upstream.set_default_fault("anthropic", BedrockStreamException())
    with pytest.raises(ValueError, match="unknown upstream"):
        fake_upstream.add_fault("openai", HttpError())


# --- recording and connection accounting ---------------------------------------------------------


def test_requests_are_recorded_byte_for_byte(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    raw_body = (
        b'{"model": "m",  "max_tokens": 1, "messages": [{"role":"user","content":"\\u00e9"}]}'
    )
    http.post(
        f"{fake_upstream.base_url}/v1/messages?beta=true",
        content=raw_body,
        headers={
            "x-api-key": "sk-client",
            "anthropic-beta": "a,b",
            "anthropic-version": "2023-06-01",
        },
    )
    http.get(f"{fake_upstream.base_url}/v1/models?limit=2")
    first, second = fake_upstream.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/messages", "beta=true")
    assert first.body == raw_body
    assert first.json()["messages"][0]["content"] == "é"
    assert first.header("X-API-Key") == "sk-client"
    assert first.header("anthropic-beta") == "a,b"
    assert first.header("absent") is None
    assert (first.upstream, first.endpoint, first.status, first.outcome) == (
        "anthropic",
        "messages",
        200,
        "completed",
    )
    assert first.finished_at is not None and first.finished_at >= first.started_at
    assert (second.method, second.endpoint, second.query) == ("GET", "models", "limit=2")
    assert fake_upstream.requests_to("anthropic", "models") == [second]
    assert fake_upstream.requests_to("bedrock") == []


def test_keep_alive_connections_are_counted() -> None:
    # A server of its own: the shared one has idle connections left by other tests' clients.
    with FakeUpstream() as fake:
        with httpx.Client(base_url=fake.base_url) as client:
            for _ in range(3):
                client.post("/v1/messages", json=MESSAGES_BODY)
            assert fake.connections_opened == 1
            assert fake.connections_open == 1
        fake.wait_until(lambda: fake.connections_open == 0)
        with (
            httpx.Client(base_url=fake.base_url) as first,
            httpx.Client(base_url=fake.base_url) as second,
        ):
            first.get("/v1/models")
            second.get("/v1/models")
            assert fake.connections_open == 2
        assert fake.connections_opened == 3
        fake.wait_until(lambda: fake.connections_open == 0)


def test_client_abandoning_a_stream_is_reported(fake_upstream: FakeUpstream) -> None:
    body = {**MESSAGES_BODY, "stream": True}
    headers = {"x-fake-text-deltas": "500", "x-fake-delta-interval-ms": "20"}
    with httpx.Client(base_url=fake_upstream.base_url) as client:
        with client.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            lines = response.iter_lines()
            while "content_block_delta" not in next(lines):
                pass
            fake_upstream.wait_until(lambda: fake_upstream.streams_in_flight == 1)
            assert fake_upstream.requests_in_flight == 1
        abandoned = fake_upstream.wait_for_disconnect()
    assert abandoned.streaming and abandoned.abandoned
    assert abandoned.outcome == "client_disconnected"
    assert abandoned.client_disconnected_at is not None
    assert 0 < abandoned.events_sent < 500
    fake_upstream.wait_until(lambda: fake_upstream.streams_in_flight == 0)
    assert fake_upstream.max_streams_in_flight == 1
    assert fake_upstream.abandoned_requests == [abandoned]


async def test_async_wait_keeps_the_event_loop_running(fake_upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake_upstream.base_url) as client:
        body = {**MESSAGES_BODY, "stream": True}
        headers = {"x-fake-text-deltas": "300", "x-fake-delta-interval-ms": "20"}
        async with client.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if "content_block_delta" in line:
                    break
            await fake_upstream.wait_until_async(lambda: fake_upstream.streams_in_flight == 1)
        await fake_upstream.wait_until_async(lambda: bool(fake_upstream.abandoned_requests))


def test_completed_requests_are_not_abandoned(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.base_url) as client:
        client.post("/v1/messages", json={**MESSAGES_BODY, "stream": True})
        client.post("/model/m/converse-stream", json={"messages": []})
    fake_upstream.wait_idle()
    assert [request.outcome for request in fake_upstream.requests] == ["completed", "completed"]
    assert fake_upstream.abandoned_requests == []


def test_settings_fixture_points_the_gateway_at_the_fake(
    fake_upstream_settings: FakeUpstream, settings: Any
) -> None:
    assert fake_upstream_settings.base_url == settings.GATEWAY_ANTHROPIC_BASE_URL
    assert fake_upstream_settings.base_url == settings.GATEWAY_BEDROCK_ENDPOINT_URL


def test_wait_for_requests_from_another_thread(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(http.get, f"{fake_upstream.base_url}/v1/models")
        seen = fake_upstream.wait_for_requests(1)
    assert [request.endpoint for request in seen] == ["models"]


def test_wait_until_times_out(fake_upstream: FakeUpstream) -> None:
    with pytest.raises(TimeoutError):
        fake_upstream.wait_until(lambda: False, timeout=0.01)
    with pytest.raises(LookupError):
        _ = fake_upstream.last_request


def test_reset_forgets_scripts_faults_and_history(
    http: httpx.Client, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.answer = ScriptedAnswer.text("scripted")
    fake_upstream.add_fault("bedrock", HttpError(status=500))
    fake_upstream.extra_headers["anthropic"]["anthropic-ratelimit-unified-status"] = "allowed"
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    assert response.headers["anthropic-ratelimit-unified-status"] == "allowed"
    fake_upstream.reset()
    assert fake_upstream.requests == [] and fake_upstream.connections_opened == 0
    assert fake_upstream.faults["bedrock"].pending() == []
    response = http.post(f"{fake_upstream.base_url}/v1/messages", json=MESSAGES_BODY)
    assert response.json()["content"][0]["text"].startswith("Fake answer to:")
    assert "anthropic-ratelimit-unified-status" not in response.headers


def test_record_false_keeps_counters_only(http: httpx.Client) -> None:
    with FakeUpstream(record=False) as fake:
        http.post(f"{fake.base_url}/v1/messages", json=MESSAGES_BODY)
        assert fake.requests == []
        assert fake.connections_opened == 1


def test_stop_ends_streams_in_flight_and_refuses_new_connections() -> None:
    fake = FakeUpstream(text_deltas=1000, delta_interval_ms=50).start()
    base_url = fake.base_url
    with httpx.Client(base_url=base_url) as client:
        with client.stream(
            "POST", "/v1/messages", json={**MESSAGES_BODY, "stream": True}
        ) as response:
            lines = response.iter_lines()
            next(lines)
            fake.stop()
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in lines:
                    pass
        with pytest.raises(httpx.ConnectError):
            client.get("/v1/models")
    assert fake.requests[0].outcome == "server_closed"
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url
    fake.stop()  # stopping twice is harmless


def test_start_twice_is_refused() -> None:
    with FakeUpstream() as fake, pytest.raises(RuntimeError, match="already started"):
        fake.start()


def test_command_line_serves_until_terminated(http: httpx.Client) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.testing.fake_upstream", "--port", "0", "--text-deltas", "7"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = http.post(f"{base_url}/v1/messages", json={**MESSAGES_BODY, "stream": True})
        deltas = [name for name, _ in sse_events(response.text) if name == "content_block_delta"]
        assert len(deltas) == 7
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr


def test_command_line_rejects_bad_pacing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy.testing.fake_upstream", "--text-deltas", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "text_deltas must be at least 1" in result.stderr
