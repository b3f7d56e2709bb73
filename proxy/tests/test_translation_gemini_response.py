"""Gemini answers, streams and errors -> the Anthropic hub, and the thought-signature round trip.

Every fake Gemini answer goes through google-genai's ``GenerateContentResponse`` first, so no test
feeds a shape Gemini never sends. Hub answers are validated with ``anthropic.types.Message`` and
streams with the grammar checker of ``test_translation_hub_stream`` (and anthropic's own stream
accumulator); a Hypothesis property feeds random chunk sequences, ended early or by an error.
The next request of each round trip is validated as in ``test_translation_gemini``.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

import pytest
from anthropic.types import Message
from google.genai import types as genai
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.tests.test_translation_gemini import (
    PNG,
    SIG_A,
    SIG_B,
    WEATHER_TOOL,
    assistant,
    strict,
    to_gemini,
    tool_result,
    user,
)
from proxy.tests.test_translation_hub_stream import assert_well_formed, checked
from proxy.translation.gemini import (
    GeminiStreamToAnthropic,
    gemini_error_to_anthropic,
    gemini_reasoning_tokens,
    gemini_retry_after_seconds,
    gemini_to_anthropic,
    gemini_usage,
    signature_from_tool_id,
    tool_id_with_signature,
)

# Tool ids of signed calls carry the signature in base64url after "__gsig_".
ID_01_A = "toolu_01__gsig_" + base64.urlsafe_b64encode(b"signature-a").decode().rstrip("=")
ID_02_B = "toolu_02__gsig_" + base64.urlsafe_b64encode(b"signature-b").decode().rstrip("=")


# --- answers -----------------------------------------------------------------------------------


def usage_metadata(
    prompt: int = 10, out: int = 5, thoughts: int = 0, cached: int = 0
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "totalTokenCount": prompt + out + thoughts,
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if cached:
        metadata["cachedContentTokenCount"] = cached
    return metadata


def response(
    parts: list[dict[str, Any]],
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    value = {
        "candidates": [candidate],
        "usageMetadata": usage or usage_metadata(),
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
        **extra,
    }
    strict(genai.GenerateContentResponse, value)  # a shape Gemini really sends
    return value


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"toolu_{next(counter):02d}"


def to_hub(answer: dict[str, Any]) -> dict[str, Any]:
    message = gemini_to_anthropic(
        answer, model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    Message.model_validate(message)
    return message


def test_text_answer_and_usage() -> None:
    message = to_hub(
        response([{"text": "Hello"}, {"text": " there"}], usage=usage_metadata(100, 7, 3, 40))
    )
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "gemini-2.5-flash",
        "content": [{"type": "text", "text": "Hello there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 60,
            "output_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 40,
        },
    }


def test_usage_mapping_and_reasoning_tokens() -> None:
    metadata = {**usage_metadata(100, 7, 3, 40), "toolUsePromptTokenCount": 5}
    assert gemini_usage(metadata).as_dict() == {
        "input_tokens": 65,
        "output_tokens": 10,
        "cache_read_input_tokens": 40,
        "cache_creation_input_tokens": 0,
    }
    assert gemini_reasoning_tokens(metadata) == 3
    assert gemini_reasoning_tokens(None) == 0
    assert gemini_usage({"promptTokenCount": 3, "cachedContentTokenCount": 9}).input_tokens == 0


def test_thoughts_function_calls_and_signatures() -> None:
    message = to_hub(
        response(
            [
                {"text": "Let me look this up.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]
        )
    )
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me look this up.", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": ID_01_A, "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
    ]


def test_every_call_signed_round_trips_each_signature_to_its_call() -> None:
    # Gemini signs the first call of a turn; some models (and the fake Gemini) sign every call.
    message = to_hub(
        response(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "A"}},
                    "thoughtSignature": SIG_A,
                },
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "B"}},
                    "thoughtSignature": SIG_B,
                },
            ]
        )
    )
    assert [block["type"] for block in message["content"]] == ["thinking", "tool_use"] * 2
    results = user([tool_result(ID_01_A), tool_result(ID_02_B)])
    parts = replay(message, [user("q")], results)["contents"][1]["parts"]
    assert [(p["functionCall"]["args"]["city"], p["thoughtSignature"]) for p in parts] == [
        ("A", SIG_A),
        ("B", SIG_B),
    ]


def test_signature_without_thoughts_is_a_thinking_block_of_its_own() -> None:
    message = to_hub(
        response(
            [
                {"text": "Sure."},
                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SIG_A},
            ]
        )
    )
    assert message["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "thinking", "thinking": "", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": ID_01_A, "name": "f", "input": {}},
    ]


def test_signature_on_a_thought_part_stays_on_its_block_and_goes_to_the_next_part() -> None:
    message = to_hub(
        response(
            [
                {"text": "plan", "thought": True, "thoughtSignature": SIG_A},
                {"text": "more", "thought": True},
                {"text": "Answer."},
            ]
        )
    )
    assert message["content"] == [
        {"type": "thinking", "thinking": "plan", "signature": f"gemini:{SIG_A}"},
        {"type": "thinking", "thinking": "more", "signature": ""},
        {"type": "text", "text": "Answer."},
    ]
    request = replay(message, [user("q")], user("next"))
    assert request["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Answer.", "thoughtSignature": SIG_A}],
    }


def test_unsigned_thoughts_and_dropped_parts() -> None:
    message = to_hub(
        response(
            [
                {"text": "hmm", "thought": True},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
                {"text": "Done."},
            ]
        )
    )
    assert message["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Done."},
    ]


@pytest.mark.parametrize(
    ("finish", "with_call", "stop_reason"),
    [
        ("STOP", False, "end_turn"),
        ("STOP", True, "tool_use"),
        ("MAX_TOKENS", False, "max_tokens"),
        ("MAX_TOKENS", True, "max_tokens"),
        ("SAFETY", False, "refusal"),
        ("RECITATION", False, "refusal"),
        ("BLOCKLIST", False, "refusal"),
        ("PROHIBITED_CONTENT", False, "refusal"),
        ("SPII", False, "refusal"),
        ("IMAGE_SAFETY", False, "refusal"),
        ("MALFORMED_FUNCTION_CALL", False, "end_turn"),
        ("OTHER", True, "end_turn"),
        ("LANGUAGE", False, "end_turn"),
    ],
)
def test_finish_reasons(finish: str, with_call: bool, stop_reason: str) -> None:
    parts: list[dict[str, Any]] = [{"text": "x"}]
    if with_call:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    assert to_hub(response(parts, finish))["stop_reason"] == stop_reason


def test_blocked_prompt_is_a_refusal_with_no_content() -> None:
    answer = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
    }
    strict(genai.GenerateContentResponse, answer)
    message = to_hub(answer)
    assert message["content"] == [] and message["stop_reason"] == "refusal"
    assert message["usage"]["input_tokens"] == 12


def test_an_error_body_is_not_an_answer() -> None:
    with pytest.raises(ValueError):
        gemini_to_anthropic({"error": {"code": 500}}, model="m", message_id="msg")


# --- thought signatures: the round trip ---------------------------------------------------------


def replay(
    message: dict[str, Any], prior: list[dict[str, Any]], then: dict[str, Any]
) -> dict[str, Any]:
    """The next request, with the assistant turn exactly as a client stores and replays it."""
    stored = json.loads(json.dumps(message["content"]))
    return to_gemini({"tools": [WEATHER_TOOL], "messages": [*prior, assistant(stored), then]})


def test_round_trip_puts_the_signature_back_on_the_function_call() -> None:
    question = user("Weather in Paris and Rome?")
    message = to_hub(
        response(
            [
                {"text": "Planning.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]
        )
    )
    results = user([tool_result(ID_01_A, "18C"), tool_result("toolu_02", "21C")])
    request = replay(message, [question], results)
    assert request["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}},
            ],
        },
    ]


def test_round_trip_without_thinking_blocks_reads_the_signature_from_the_id() -> None:
    # OpenAI-format clients drop reasoning but send tool call ids back unchanged.
    message = to_hub(
        response(
            [
                {"text": "Planning.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": SIG_A,
                },
            ]
        )
    )
    without_thinking = {
        **message,
        "content": [b for b in message["content"] if b["type"] != "thinking"],
    }
    request = replay(without_thinking, [user("q")], user([tool_result(ID_01_A)]))
    assert request["contents"][1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
            "thoughtSignature": SIG_A,
        }
    ]


def test_tool_ids_keep_anthropics_alphabet_and_carry_the_signature() -> None:
    long_signature = base64.b64encode(bytes(range(256)) * 8).decode()  # '+', '/' and '='
    tool_id = tool_id_with_signature("toolu_abc", long_signature)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", tool_id)
    assert signature_from_tool_id(tool_id) == long_signature
    assert tool_id_with_signature("toolu_abc", "") == "toolu_abc"
    assert tool_id_with_signature("toolu_abc", "not base64!") == "toolu_abc"
    for plain in ("toolu_abc", "call_1", "toolu_abc__gsig_", "x__gsig_###"):
        assert signature_from_tool_id(plain) is None


def test_round_trip_of_a_streamed_text_signature() -> None:
    # Gemini streams often put the signature of a text answer in a last chunk with empty text.
    chunks = [
        response([{"text": "Hel"}], finish=None),
        response([{"text": "lo"}], finish=None),
        response([{"text": "", "thoughtSignature": SIG_B}], finish="STOP"),
    ]
    events = stream_events(chunks)
    message = checked(events).model_dump(exclude_none=True)
    assert [b["type"] for b in message["content"]] == ["text", "thinking"]
    request = replay(message, [user("Hi")], user("And?"))
    assert request["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Hello", "thoughtSignature": SIG_B}],
    }


# --- streams -----------------------------------------------------------------------------------


def stream_events(chunks: list[dict[str, Any]], *, finish: bool = True) -> list[Any]:
    stream = GeminiStreamToAnthropic(
        model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    if finish:
        events += stream.finish()
    return events


def test_stream_text_split_across_chunks_is_one_block_with_usage() -> None:
    chunks = [
        response([{"text": "Hel"}], finish=None, usage=usage_metadata(20, 1, cached=8)),
        response([{"text": "lo!"}], finish=None, usage=usage_metadata(20, 2, cached=8)),
        response(
            [{"text": "\n"}], finish="STOP", usage=usage_metadata(20, 3, thoughts=4, cached=8)
        ),
    ]
    stream = GeminiStreamToAnthropic(model="gemini-2.5-flash", message_id="msg_1")
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    message = checked(events)
    assert [b.model_dump() for b in message.content] == [
        {"type": "text", "text": "Hello!\n", "citations": None}
    ]
    assert events[0][1]["message"]["usage"] == {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 8,
    }
    assert message.usage.output_tokens == 7 and message.usage.input_tokens == 12
    assert stream.usage.as_dict()["output_tokens"] == 7
    assert stream.reasoning_tokens == 4
    assert stream.finish() == []  # idempotent


def test_stream_thoughts_then_signed_call() -> None:
    chunks = [
        response([{"text": "Think", "thought": True}], finish=None),
        response([{"text": "ing", "thought": True}], finish=None),
        response([{"text": "\n\n"}], finish=None),  # blank text before a call: never a block
        response(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": SIG_A,
                }
            ],
            finish="STOP",
        ),
    ]
    events = stream_events(chunks)
    message = checked(events).model_dump(exclude_none=True)
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Thinking", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": ID_01_A, "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    tool_events = [e for e in events if e[1].get("index") == 1]
    assert [e[0] for e in tool_events] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]


def test_stream_ending_early_still_closes() -> None:
    events = stream_events([response([{"text": "Partial ans"}], finish=None)])
    message = checked(events)
    assert message.stop_reason == "end_turn"
    assert [e[0] for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert checked(stream_events([])).content == []  # nothing at all came


def test_stream_ending_early_after_a_call_is_tool_use() -> None:
    events = stream_events(
        [response([{"functionCall": {"name": "f", "args": {"a": 1}}}], finish=None)]
    )
    assert checked(events).stop_reason == "tool_use"


def test_stream_error_chunk_ends_the_stream() -> None:
    stream = GeminiStreamToAnthropic(
        model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    events = stream.feed(response([{"text": "Hello"}], finish=None))
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    events += stream.feed(error)
    events += stream.feed(response([{"text": "late"}], finish="STOP"))
    events += stream.finish()
    assert_well_formed(events)
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "The model is overloaded."},
        },
    )
    assert [name for name, _ in events].count("content_block_delta") == 1


def test_stream_fed_json_array_elements_and_wrapped_errors() -> None:
    # streamGenerateContent without alt=sse answers one JSON array; errors come wrapped in one.
    stream = GeminiStreamToAnthropic(model="m", message_id="msg_1")
    events = stream.feed([response([{"text": "A"}], finish=None), response([{"text": "B"}])])
    events += stream.feed([{"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}])
    assert_well_formed(events)
    assert [e[1]["delta"]["text"] for e in events if e[0] == "content_block_delta"] == ["A", "B"]
    assert events[-1][1]["error"]["type"] == "api_error"


def test_stream_error_first() -> None:
    events = stream_events(
        [{"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}]
    )
    assert events == [
        ("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "Quota"}})
    ]


PART = st.one_of(
    st.builds(lambda t: {"text": t}, st.sampled_from(["", " ", "\n", "Hi", "there", "é😀"])),
    st.builds(lambda t: {"text": t, "thought": True}, st.sampled_from(["", "plan", " "])),
    st.builds(
        lambda name, city: {"functionCall": {"name": name, "args": {"city": city}}},
        st.sampled_from(["get_weather", "f"]),
        st.text(max_size=5),
    ),
)
SIGNED_PART = st.tuples(PART, st.booleans()).map(
    lambda pair: {**pair[0], "thoughtSignature": SIG_A} if pair[1] else pair[0]
)
CHUNK = st.builds(
    lambda parts, finish, prompt, out: response(parts, finish, usage_metadata(prompt, out)),
    st.lists(SIGNED_PART, max_size=4),
    st.sampled_from([None, None, None, "STOP", "MAX_TOKENS", "SAFETY", "OTHER"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)
ERROR_CHUNK = st.just({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})


def expected_stop_reason(chunks: list[dict[str, Any]], calls: int) -> str:
    reasons = [c["candidates"][0].get("finishReason") for c in chunks if "candidates" in c]
    last = next((reason for reason in reversed(reasons) if reason), None)
    if last == "SAFETY":
        return "refusal"
    if last == "MAX_TOKENS":
        return "max_tokens"
    return "tool_use" if calls and last in (None, "STOP") else "end_turn"


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.one_of(CHUNK, CHUNK, CHUNK, ERROR_CHUNK), max_size=8))
def test_any_chunk_sequence_gives_a_well_formed_stream(chunks: list[dict[str, Any]]) -> None:
    # Chunks without a finish reason at the end are a stream that ended early.
    events = stream_events(chunks)
    assert_well_formed(events)
    if events[-1][0] == "error":
        return
    message = checked(events)
    calls = sum(block.type == "tool_use" for block in message.content)
    assert calls == sum(
        "functionCall" in p for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert message.stop_reason == expected_stop_reason(chunks, calls)
    assert message.usage.input_tokens == (
        chunks[-1]["usageMetadata"]["promptTokenCount"] if chunks else 0
    )


# --- errors ------------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_type"),
    [
        (400, google_error(400, "INVALID_ARGUMENT", "Bad"), 400, "invalid_request_error"),
        (400, google_error(400, "FAILED_PRECONDITION", "No billing"), 400, "invalid_request_error"),
        (401, google_error(401, "UNAUTHENTICATED", "No key"), 403, "permission_error"),
        (403, google_error(403, "PERMISSION_DENIED", "Denied"), 403, "permission_error"),
        (404, google_error(404, "NOT_FOUND", "models/x is not found"), 404, "not_found_error"),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota"), 429, "rate_limit_error"),
        (500, google_error(500, "INTERNAL", "Oops"), 500, "api_error"),
        (503, google_error(503, "UNAVAILABLE", "Overloaded"), 529, "overloaded_error"),
        (504, google_error(504, "DEADLINE_EXCEEDED", "Slow"), 504, "timeout_error"),
        (499, google_error(499, "CANCELLED", "Cancelled"), 500, "api_error"),
        (502, None, 500, "api_error"),
        (503, None, 529, "overloaded_error"),
        (401, None, 403, "permission_error"),
        (418, {"unexpected": True}, 400, "invalid_request_error"),
    ],
)
def test_errors(status: int, body: Any, expected_status: int, expected_type: str) -> None:
    mapped_status, mapped = gemini_error_to_anthropic(status, body)
    assert mapped_status == expected_status
    assert mapped["type"] == "error" and mapped["error"]["type"] == expected_type
    assert mapped["error"]["message"]


def test_invalid_key_is_the_gateways_problem() -> None:
    body = google_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
    )
    assert gemini_error_to_anthropic(400, body) == (
        403,
        {
            "type": "error",
            "error": {
                "type": "permission_error",
                "message": "API key not valid. Please pass a valid API key.",
            },
        },
    )


def test_too_long_prompt_reads_as_anthropic_and_list_wrapped_errors() -> None:
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    status, body = gemini_error_to_anthropic(400, [google_error(400, "INVALID_ARGUMENT", message)])
    assert status == 400
    assert body["error"]["message"] == f"prompt is too long: {message}"


def test_retry_after_from_retry_info() -> None:
    body = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.2s"},
    )
    assert gemini_retry_after_seconds(body) == 37
    assert gemini_retry_after_seconds(google_error(429, "RESOURCE_EXHAUSTED", "Quota")) is None
    assert gemini_retry_after_seconds(None) is None
