"""Tests of the fake OpenAI upstream: its answers are parsed by the openai SDK with strict response
validation (JSON, streams, legacy completions, embeddings, models), every validation rule is shown
rejecting a wrong request and accepting the right one, then auth, faults and records with httpx.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_openai import FakeOpenAI, insufficient_quota, rate_limited
from proxy.testing.faults import Delay, DropConnection, HttpError, ProviderStreamError, StreamCut
from proxy.testing.provider_answers import embedding_vector
from proxy.testing.provider_server import key_sha256
from proxy.testing.rule_checks import refused_then_accepted
from proxy.testing.validation import openai_rules
from proxy.testing.validation.typed_dicts import strict_model, typed_dict_fields

_fixture_server = fixtures.fake_openai_server
_fixture_fake = fixtures.fake_openai

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-0123456789"
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 11, "output_tokens": 30, "cache_read_input_tokens": 100},
    reasoning_tokens=7,
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.fixture
def sdk(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=KEY,
        base_url=f"{fake_openai.base_url}/v1",
        max_retries=0,
        _strict_response_validation=True,
    )


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


# --- answers through the SDK ---------------------------------------------------------------------


def test_default_chat_answer_derives_from_the_prompt(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    completion = sdk.chat.completions.create(**CHAT)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Fake answer to: What is the weather in Paris?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == 9
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens == len(fake_openai.last_request.body) // 4


def test_scripted_tool_calls_in_a_json_answer(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = TOOL_ANSWER
    completion = sdk.chat.completions.create(**CHAT, tools=TOOLS, n=2)  # type: ignore[arg-type]
    assert [choice.index for choice in completion.choices] == [0, 1]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert [
        (call.id, call.function.name, json.loads(call.function.arguments)) for call in calls
    ] == [  # type: ignore[union-attr]
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_time", {}),
    ]
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (111, 100)
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 7


def test_stream_without_include_usage_has_no_usage(
    sdk: openai.OpenAI, http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.pacing = fake_openai.pacing.__class__(text_deltas=3)
    chunks = list(sdk.chat.completions.create(**CHAT, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "Fake answer to: What is the weather in Paris?"
    assert chunks[-1].choices[0].finish_reason == "stop"
    raw = http.post(f"{fake_openai.base_url}/v1/chat/completions", json={**CHAT, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    data = sse_data(raw.text)
    assert data[-1] == "[DONE]"
    assert all("usage" not in json.loads(item) for item in data[:-1])


def test_stream_with_include_usage_ends_with_a_usage_chunk(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.answer = TOOL_ANSWER
    stream = sdk.chat.completions.create(
        **CHAT,
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 141
    assert all(chunk.usage is None for chunk in chunks[:-1])
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks[:-1]:
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += (call.function and call.function.name) or ""
            entry["arguments"] += (call.function and call.function.arguments) or ""
    assert calls == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_2", "name": "get_time", "arguments": "{}"},
    }
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


def test_stream_accumulates_with_the_sdk_helper(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.answer = TOOL_ANSWER
    with sdk.chat.completions.stream(**CHAT, tools=TOOLS) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]


def test_reasoning_field_carries_thinking_for_compatible_servers() -> None:
    answer = ScriptedAnswer(
        content=[
            {"type": "thinking", "thinking": "Think first.", "signature": "sig"},
            {"type": "text", "text": "Done."},
        ]
    )
    with FakeOpenAI(reasoning_field="reasoning_content") as fake:
        fake.answer = answer
        client = httpx.Client(headers={"authorization": f"Bearer {KEY}"})
        whole = client.post(f"{fake.base_url}/v1/chat/completions", json=CHAT).json()
        assert whole["choices"][0]["message"]["reasoning_content"] == "Think first."
        streamed = client.post(
            f"{fake.base_url}/v1/chat/completions", json={**CHAT, "stream": True}
        )
        deltas = [json.loads(item) for item in sse_data(streamed.text)[:-1]]
        reasoning = "".join(d["choices"][0]["delta"].get("reasoning_content", "") for d in deltas)
        assert reasoning == "Think first."


def test_thinking_is_not_sent_by_default(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = ScriptedAnswer(
        content=[
            {"type": "thinking", "thinking": "Think first.", "signature": "sig"},
            {"type": "text", "text": "Done."},
        ]
    )
    whole = http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT).json()
    assert whole["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Done.",
        "refusal": None,
        "annotations": [],
    }


def test_legacy_completions_json_and_stream(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    completion = sdk.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Fake answer to: Say hello"
    assert completion.choices[0].finish_reason == "stop"
    # OpenAI streams `"finish_reason": null` before the last chunk, which the SDK's strict type
    # refuses (it is shared with whole completions): the stream is read without strict mode.
    loose = openai.OpenAI(api_key=KEY, base_url=f"{fake_openai.base_url}/v1", max_retries=0)
    chunks = list(
        loose.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hello",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == (
        "Fake answer to: Say hello"
    )
    assert [chunk.choices[0].finish_reason for chunk in chunks[:-1]][-2:] == [None, "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5  # the words of the answer


def test_embeddings_are_deterministic_floats_with_dimensions(sdk: openai.OpenAI) -> None:
    first = sdk.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert [len(item.embedding) for item in first.data] == [1536, 1536]
    again = sdk.embeddings.create(
        model="text-embedding-3-small", input=["alpha"], encoding_format="float", dimensions=8
    )
    vector = again.data[0].embedding
    assert len(vector) == 8
    assert vector == embedding_vector("alpha", model="text-embedding-3-small", dimensions=8)
    assert abs(sum(value * value for value in vector) - 1) < 1e-5
    assert first.data[0].embedding != first.data[1].embedding
    assert first.usage.prompt_tokens == first.usage.total_tokens == 3  # about 4 characters a token


def test_embeddings_base64_decode_to_the_float_vectors(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    body = {"model": "text-embedding-3-large", "input": "alpha", "dimensions": 6}
    url = f"{fake_openai.base_url}/v1/embeddings"
    floats = http.post(url, json=body).json()["data"][0]["embedding"]
    encoded = http.post(url, json={**body, "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack("<6f", raw)) == floats
    # The SDK asks for base64 by default and decodes it (its strict mode cannot type a string).
    loose = openai.OpenAI(api_key=KEY, base_url=f"{fake_openai.base_url}/v1", max_retries=0)
    decoded = loose.embeddings.create(model="text-embedding-3-large", input="alpha", dimensions=6)
    assert fake_openai.last_request.parsed["encoding_format"] == "base64"
    assert decoded.data[0].embedding == pytest.approx(floats)


def test_embeddings_of_token_arrays(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    body = {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]], "dimensions": 4}
    page = http.post(f"{fake_openai.base_url}/v1/embeddings", json=body).json()
    assert [item["index"] for item in page["data"]] == [0, 1]
    assert page["usage"]["prompt_tokens"] == 4


def test_models_list(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.models = [{"id": "my-model", "created": 1, "owned_by": "me"}]
    models = list(sdk.models.list())
    assert [(model.id, model.owned_by) for model in models] == [("my-model", "me")]


# --- request validation: the TypedDicts made strict ----------------------------------------------


def test_required_keys_are_read_from_the_resolved_annotations() -> None:
    from openai.types.chat import completion_create_params as params

    # The TypedDict's own bookkeeping misses them (string annotations); ours does not.
    assert "model" not in params.CompletionCreateParamsStreaming.__required_keys__
    fields = typed_dict_fields(params.CompletionCreateParamsStreaming)
    assert fields["model"][0] and fields["messages"][0] and fields["stream"][0]
    assert not fields["temperature"][0]
    model = strict_model(params.CompletionCreateParamsStreaming)
    assert model.model_config.get("extra") == "forbid"


VALID_TOOL_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "20C"},
]


def _history_with(**changes: Any) -> list[dict[str, Any]]:
    history = json.loads(json.dumps(VALID_TOOL_HISTORY))
    for path, value in changes.items():
        position, key = path.split("__")
        history[int(position)][key] = value
    return history


# (rule, a body the real API refuses, the corrected body, a fragment of the reason)
CHAT_RULES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "unknown top-level key",
        {**CHAT, "max_output_tokens": 5},
        {**CHAT, "max_tokens": 5},
        "max_output_tokens: Extra inputs",
    ),
    (
        "unknown key in a content part",
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {}}]}
            ],
        },
        {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
        "cache_control: Extra inputs",
    ),
    (
        "unknown role",
        {**CHAT, "messages": [{"role": "human", "content": "a"}]},
        CHAT,
        "'role' is one of",
    ),
    (
        "strict integer",
        {**CHAT, "max_tokens": "5"},
        {**CHAT, "max_tokens": 5},
        "max_tokens: Input should be a valid integer",
    ),
    (
        "no bool for an integer",
        {**CHAT, "n": True},
        {**CHAT, "n": 1},
        "n: Input should be a valid integer",
    ),
    ("model is required", {"messages": CHAT["messages"]}, CHAT, "model: Field required"),
    (
        "literal values",
        {**CHAT, "reasoning_effort": "extreme"},
        {**CHAT, "reasoning_effort": "low"},
        "reasoning_effort",
    ),
    ("messages non-empty", {**CHAT, "messages": []}, CHAT, "at least one message"),
    (
        "temperature 0-2",
        {**CHAT, "temperature": 2.5},
        {**CHAT, "temperature": 2},
        "temperature: 2.5 is out of range",
    ),
    ("top_p 0-1", {**CHAT, "top_p": 1.5}, {**CHAT, "top_p": 1}, "top_p: 1.5 is out of range"),
    ("n at least 1", {**CHAT, "n": 0}, {**CHAT, "n": 1}, "n: 0 is out of range"),
    (
        "stream_options only with stream",
        {**CHAT, "stream_options": {"include_usage": True}},
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        "only allowed when 'stream' is enabled",
    ),
    (
        "tool_choice only with tools",
        {**CHAT, "tool_choice": "auto"},
        {**CHAT, "tools": TOOLS, "tool_choice": "auto"},
        "'tool_choice' is only allowed",
    ),
    (
        "parallel_tool_calls only with tools",
        {**CHAT, "parallel_tool_calls": False},
        {**CHAT, "tools": TOOLS, "parallel_tool_calls": False},
        "'parallel_tool_calls' is only allowed",
    ),
    (
        "named tool_choice names a tool",
        {**CHAT, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {
            **CHAT,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        "'nope' is not among 'tools'",
    ),
    (
        "a tool message answers a preceding tool call",
        {**CHAT, "messages": _history_with(**{"2__tool_call_id": "call_9"})},
        {**CHAT, "messages": VALID_TOOL_HISTORY},
        "must be a response to a preceeding message with 'tool_calls'",
    ),
    (
        "every tool call gets its result",
        {**CHAT, "messages": [*VALID_TOOL_HISTORY[:2], {"role": "user", "content": "and?"}]},
        {**CHAT, "messages": [*VALID_TOOL_HISTORY, {"role": "user", "content": "and?"}]},
        "did not have response messages: call_1",
    ),
    (
        "assistant message has content or tool_calls",
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant"},
                {"role": "user", "content": "b"},
            ],
        },
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "b"},
            ],
        },
        "must have 'content' or 'tool_calls'",
    ),
    (
        "tool call arguments are a string",
        {
            **CHAT,
            "messages": _history_with(
                **{
                    "1__tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        }
                    ]
                }
            ),
        },
        {**CHAT, "messages": VALID_TOOL_HISTORY},
        "arguments: Input should be a valid string",
    ),
    (
        "tool call arguments hold JSON",
        {
            **CHAT,
            "messages": _history_with(
                **{
                    "1__tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{city: Paris"},
                        }
                    ]
                }
            ),
        },
        {**CHAT, "messages": VALID_TOOL_HISTORY},
        "not a JSON string",
    ),
    (
        "tools have the function shape",
        {**CHAT, "tools": [{"type": "function", "name": "get_weather", "input_schema": {}}]},
        {**CHAT, "tools": TOOLS},
        "tools.0.name: Extra inputs",
    ),
]


@pytest.mark.parametrize(
    ("rule", "wrong", "right", "reason"), CHAT_RULES, ids=[rule[0] for rule in CHAT_RULES]
)
def test_chat_validation_rule(
    http: httpx.Client,
    fake_openai: FakeOpenAI,
    rule: str,
    wrong: dict[str, Any],
    right: dict[str, Any],
    reason: str,
) -> None:
    url = f"{fake_openai.base_url}/v1/chat/completions"
    refused = refused_then_accepted(http, fake_openai, url, wrong=wrong, right=right, reason=reason)
    error = refused["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert reason in error["message"]


COMPLETION = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
EMBEDDING = {"model": "text-embedding-3-small", "input": "hello"}
OTHER_RULES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "completions",
        "unknown key",
        {**COMPLETION, "messages": []},
        COMPLETION,
        "messages: Extra inputs",
    ),
    (
        "completions",
        "prompt required",
        {"model": "gpt-3.5-turbo-instruct"},
        COMPLETION,
        "prompt: Field required",
    ),
    (
        "completions",
        "prompt not empty",
        {**COMPLETION, "prompt": ""},
        COMPLETION,
        "prompt: must not be empty",
    ),
    (
        "completions",
        "best_of at least n",
        {**COMPLETION, "n": 2, "best_of": 1},
        {**COMPLETION, "n": 2, "best_of": 2},
        "best_of",
    ),
    (
        "completions",
        "temperature 0-2",
        {**COMPLETION, "temperature": -1},
        COMPLETION,
        "temperature",
    ),
    (
        "completions",
        "stream_options only with stream",
        {**COMPLETION, "stream_options": {"include_usage": True}},
        {**COMPLETION, "stream": True, "stream_options": {"include_usage": True}},
        "only allowed when 'stream'",
    ),
    (
        "embeddings",
        "unknown key",
        {**EMBEDDING, "input_type": "query"},
        EMBEDDING,
        "input_type: Extra inputs",
    ),
    (
        "embeddings",
        "input not empty",
        {**EMBEDDING, "input": ["a", ""]},
        {**EMBEDDING, "input": ["a", "b"]},
        "'$.input' is invalid",
    ),
    ("embeddings", "input types", {**EMBEDDING, "input": [{"text": "a"}]}, EMBEDDING, "input"),
    (
        "embeddings",
        "encoding_format values",
        {**EMBEDDING, "encoding_format": "float32"},
        {**EMBEDDING, "encoding_format": "float"},
        "encoding_format",
    ),
    (
        "embeddings",
        "dimensions only for models that have them",
        {"model": "text-embedding-ada-002", "input": "a", "dimensions": 8},
        {**EMBEDDING, "dimensions": 8},
        "does not support specifying dimensions",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "rule", "wrong", "right", "reason"),
    OTHER_RULES,
    ids=[f"{rule[0]}: {rule[1]}" for rule in OTHER_RULES],
)
def test_completion_and_embedding_validation_rule(
    http: httpx.Client,
    fake_openai: FakeOpenAI,
    endpoint: str,
    rule: str,
    wrong: dict[str, Any],
    right: dict[str, Any],
    reason: str,
) -> None:
    url = f"{fake_openai.base_url}/v1/{endpoint}"
    refused = refused_then_accepted(http, fake_openai, url, wrong=wrong, right=right, reason=reason)
    assert reason in refused["error"]["message"]


def test_validators_are_pure_functions_of_the_body() -> None:
    assert openai_rules.validate_chat_completion(CHAT) == []
    assert openai_rules.validate_chat_completion([]) != []
    assert openai_rules.validate_embeddings({**EMBEDDING, "input": []}) != []
    assert openai_rules.embedding_inputs([1, 2]) == [[1, 2]]
    assert openai_rules.embedding_inputs(["a", "b"]) == ["a", "b"]


def test_validation_error_names_the_parameter(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    url = f"{fake_openai.base_url}/v1/chat/completions"
    error = http.post(url, json={**CHAT, "temperature": 9}).json()["error"]
    assert (error["param"], error["code"]) == ("temperature", None)
    error = http.post(url, json=[CHAT]).json()["error"]
    assert error["param"] is None


def test_sdk_errors_on_an_invalid_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=[], temperature=3)
    assert caught.value.status_code == 400
    assert "temperature" in caught.value.message


def test_body_that_is_not_json_is_a_400(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    response = http.post(f"{fake_openai.base_url}/v1/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]
    array = http.post(f"{fake_openai.base_url}/v1/chat/completions", json=[CHAT])
    assert array.status_code == 400


def test_allowed_extra_keys_for_a_compatible_server() -> None:
    with FakeOpenAI(allowed_extra_keys={"top_k"}) as fake:
        client = httpx.Client(headers={"authorization": f"Bearer {KEY}"})
        url = f"{fake.base_url}/v1/chat/completions"
        assert client.post(url, json={**CHAT, "top_k": 5}).status_code == 200
        assert client.post(url, json={**CHAT, "min_p": 0.1}).status_code == 400


# --- auth ----------------------------------------------------------------------------------------


def test_missing_key_is_a_401(fake_openai: FakeOpenAI) -> None:
    response = httpx.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    error = response.json()["error"]
    assert "didn't provide an API key" in error["message"]
    assert fake_openai.last_request.key_sha256 is None


def test_rejected_and_accepted_keys(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.rejected_keys = {KEY}
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(**CHAT)
    assert caught.value.code == "invalid_api_key"
    assert KEY not in caught.value.message
    fake_openai.rejected_keys = set()
    fake_openai.accepted_keys = frozenset({"sk-other"})
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(**CHAT)
    fake_openai.accepted_keys = frozenset({KEY})
    assert sdk.chat.completions.create(**CHAT).choices


def test_keyless_server(fake_openai: FakeOpenAI) -> None:
    url = f"{fake_openai.base_url}/v1/chat/completions"
    fake_openai.key_required = False  # a local OpenAI-compatible server without auth
    assert httpx.post(url, json=CHAT).status_code == 200
    fake_openai.rejected_keys = {"sk-bad"}
    refused = httpx.post(url, json=CHAT, headers={"authorization": "Bearer sk-bad"})
    assert refused.status_code == 401
    fake_openai.reset()
    assert httpx.post(url, json=CHAT).status_code == 401


def test_records_mask_the_key_but_keep_its_hash(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    sdk.chat.completions.create(**CHAT)
    record = fake_openai.last_request
    assert record.key_sha256 == key_sha256(KEY)
    assert record.header("authorization") == f"Bearer ***{key_sha256(KEY)[:12]}"
    assert KEY not in json.dumps(record.headers)
    assert (record.method, record.path, record.endpoint) == (
        "POST",
        "/v1/chat/completions",
        "chat_completions",
    )
    assert record.parsed == CHAT
    assert (record.status, record.outcome, record.streaming) == (200, "completed", False)


def test_unknown_route_is_a_404_in_openai_shape(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    response = http.post(f"{fake_openai.base_url}/v1/responses", json=CHAT)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- faults --------------------------------------------------------------------------------------


def test_rate_limit_with_retry_after(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(rate_limited(retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(**CHAT)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert sdk.chat.completions.create(**CHAT).choices  # the fault was used once


def test_insufficient_quota(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(insufficient_quota())
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(**CHAT)
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (401, openai.AuthenticationError),
    ],
)
def test_http_error_faults(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, status: int, error_class: type[Exception]
) -> None:
    fake_openai.add_fault(HttpError(status=status, message="scripted", headers={"x-extra": "1"}))
    with pytest.raises(error_class) as caught:
        sdk.chat.completions.create(**CHAT)
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert caught.value.response.headers["x-extra"] == "1"  # type: ignore[attr-defined]


def test_invalid_requests_do_not_take_faults(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(HttpError(status=503))
    url = f"{fake_openai.base_url}/v1/chat/completions"
    assert http.post(url, json={**CHAT, "bogus": 1}).status_code == 400
    assert http.post(url, json=CHAT).status_code == 503


def test_fault_limited_to_an_endpoint(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(HttpError(status=500, endpoint="embeddings"))
    assert http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT).status_code == 200
    assert http.post(f"{fake_openai.base_url}/v1/embeddings", json=EMBEDDING).status_code == 500


def test_dropped_connection(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(DropConnection())
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT)
    assert fake_openai.last_request.outcome == "server_closed"


def test_stream_cut_mid_body(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(StreamCut(after_events=2))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", f"{fake_openai.base_url}/v1/chat/completions", json={**CHAT, "stream": True}
        ) as response,
    ):
        for chunk in response.iter_bytes():
            received += chunk
    assert received.count(b"data: ") == 2
    assert b"[DONE]" not in received


def test_in_stream_error(sdk: openai.OpenAI, http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fault = ProviderStreamError(after_events=2, status=429, message="Rate limited mid-stream")
    fake_openai.add_fault(fault, fault)
    raw = http.post(f"{fake_openai.base_url}/v1/chat/completions", json={**CHAT, "stream": True})
    data = sse_data(raw.text)
    assert len(data) == 3 and "[DONE]" not in data
    assert json.loads(data[-1]) == {
        "error": {
            "message": "Rate limited mid-stream",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    with pytest.raises(openai.APIError, match="Rate limited mid-stream"):
        list(sdk.chat.completions.create(**CHAT, stream=True))


def test_stream_faults_skip_json_requests(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(StreamCut())
    assert http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT).status_code == 200
    assert fake_openai.faults.pending() != []


def test_delay_and_pacing(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_fault(Delay(delay=0.2))
    started = time.monotonic()
    assert http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT).status_code == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    response = http.post(
        f"{fake_openai.base_url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"x-fake-text-deltas": "5", "x-fake-delta-interval-ms": "30"},
    )
    contents = [
        json.loads(item)["choices"][0]["delta"].get("content")
        for item in sse_data(response.text)[:-1]
    ]
    assert len([content for content in contents if content]) == 5
    assert time.monotonic() - started >= 0.12


def test_queued_answers_come_first(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = ScriptedAnswer.text("always")
    fake_openai.queue_answers(ScriptedAnswer.text("one"), ScriptedAnswer.text("two"))
    texts = [sdk.chat.completions.create(**CHAT).choices[0].message.content for _ in range(3)]
    assert texts == ["one", "two", "always"]


def test_reset_forgets_scripts_and_history(fake_openai: FakeOpenAI, http: httpx.Client) -> None:
    fake_openai.answer = ScriptedAnswer.text("x")
    fake_openai.rejected_keys = {KEY}
    fake_openai.add_fault(HttpError(status=500))
    http.post(f"{fake_openai.base_url}/v1/chat/completions", json=CHAT)
    fake_openai.reset()
    assert fake_openai.requests == [] and fake_openai.faults.pending() == []
    assert fake_openai.answer is None and fake_openai.rejected_keys == set()
