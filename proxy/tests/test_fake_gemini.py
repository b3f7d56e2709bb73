"""Tests of the fake Gemini upstream: google-genai's client parses every answer (generate, stream,
count, embed, models), the thought-signature round trip is enforced, every validation rule is
shown rejecting a wrong request and accepting the right one, then auth, faults and records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_gemini import FakeGemini, resource_exhausted
from proxy.testing.faults import DropConnection, HttpError, ProviderStreamError, StreamCut
from proxy.testing.provider_answers import embedding_vector
from proxy.testing.provider_server import key_sha256
from proxy.testing.rule_checks import refused_then_accepted
from proxy.testing.validation import gemini_rules

_fixture_server = fixtures.fake_gemini_server
_fixture_fake = fixtures.fake_gemini

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "AIza-test-0123456789"
MODEL = "gemini-2.5-flash"
BODY: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]}
TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "unused"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 10, "output_tokens": 30, "cache_read_input_tokens": 4},
    reasoning_tokens=12,
)
WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
            ),
        )
    ]
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"x-goog-api-key": KEY}) as client:
        yield client


@pytest.fixture
def client(fake_gemini: FakeGemini) -> genai.Client:
    return genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(base_url=fake_gemini.base_url, api_version="v1beta"),
    )


def url(fake: FakeGemini, action: str, model: str = MODEL) -> str:
    return f"{fake.base_url}/v1beta/models/{model}:{action}"


def sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


# --- answers through google-genai ----------------------------------------------------------------


def test_default_answer(client: genai.Client, fake_gemini: FakeGemini) -> None:
    response = client.models.generate_content(model=MODEL, contents="Hello there friend")
    assert response.text == "Fake answer to: Hello there friend"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert usage.candidates_token_count == 6
    assert usage.prompt_token_count == len(fake_gemini.last_request.body) // 4
    assert usage.total_token_count == usage.prompt_token_count + 6
    assert response.model_version == MODEL


def test_wire_form_is_camel_case(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.answer = TOOL_ANSWER
    body = http.post(url(fake_gemini, "generateContent"), json=BODY).json()
    assert set(body) == {"candidates", "usageMetadata", "modelVersion", "responseId"}
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
    ]
    assert body["usageMetadata"] == {
        "promptTokenCount": 14,
        "candidatesTokenCount": 18,
        "thoughtsTokenCount": 12,
        "cachedContentTokenCount": 4,
        "totalTokenCount": 44,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 14}],
    }


def _keys(value: Any) -> set[str]:
    """Every object key in a JSON value, except inside function arguments (user data)."""
    if isinstance(value, list):
        return set().union(*(_keys(item) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = set(value)
    for key, item in value.items():
        if key != "args":
            found |= _keys(item)
    return found


def test_every_key_of_every_answer_is_camel_case(
    http: httpx.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.answer = TOOL_ANSWER
    thinking = {
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 9, "includeThoughts": True}}
    }
    answers = [
        http.post(url(fake_gemini, "generateContent"), json={**BODY, **thinking}).json(),
        *sse_data(
            http.post(url(fake_gemini, "streamGenerateContent") + "?alt=sse", json=BODY).text
        ),
        http.post(url(fake_gemini, "countTokens"), json=BODY).json(),
        http.get(f"{fake_gemini.base_url}/v1beta/models").json(),
    ]
    keys = set().union(*(_keys(answer) for answer in answers))
    assert {"thoughtSignature", "usageMetadata", "thoughtsTokenCount", "totalTokens"} <= keys
    assert [key for key in keys if "_" in key] == []


def test_function_calls_and_thoughts(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.answer = TOOL_ANSWER
    config = types.GenerateContentConfig(
        tools=[WEATHER_TOOL],
        thinking_config=types.ThinkingConfig(thinking_budget=512, include_thoughts=True),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = client.models.generate_content(model=MODEL, contents="Weather?", config=config)
    assert response.candidates is not None and response.candidates[0].content is not None
    parts = response.candidates[0].content.parts or []
    assert parts[0].thought is True and parts[0].text == "The user wants weather."
    calls = response.function_calls or []
    assert [(call.name, call.args, call.id) for call in calls] == [
        ("get_weather", {"city": "Paris"}, None)
    ]
    assert parts[2].thought_signature is not None


def test_no_signature_and_no_thoughts_without_thinking(
    http: httpx.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.answer = TOOL_ANSWER
    parts = http.post(url(fake_gemini, "generateContent"), json=BODY).json()["candidates"][0][
        "content"
    ]["parts"]
    assert all("thoughtSignature" not in part and "thought" not in part for part in parts)
    assert fake_gemini.issued_signatures == {}


def test_signature_round_trip_is_enforced(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_answers(TOOL_ANSWER, ScriptedAnswer.text("Sunny."), ScriptedAnswer.text("x"))
    config = types.GenerateContentConfig(
        tools=[WEATHER_TOOL],
        thinking_config=types.ThinkingConfig(thinking_budget=512),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    assert first.candidates is not None and first.candidates[0].content is not None
    result = types.Content(
        role="user",
        parts=[
            types.Part(
                function_response=types.FunctionResponse(name="get_weather", response={"t": 20})
            )
        ],
    )
    # The model turn sent back as received: its signature comes with it.
    history = [question, first.candidates[0].content, result]
    second = client.models.generate_content(model=MODEL, contents=history, config=config)
    assert second.text == "Sunny."
    # The same call without its signature: Gemini's 400.
    unsigned = types.Content(
        role="model",
        parts=[
            types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}))
        ],
    )
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents=[question, unsigned, result])
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "missing a thought_signature" in (caught.value.message or "")
    assert not fake_gemini.last_request.valid


def test_stream_over_sse(client: genai.Client, http: httpx.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.answer = TOOL_ANSWER
    fake_gemini.pacing = fake_gemini.pacing.__class__(text_deltas=3)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Weather?"))
    assert "".join(chunk.text or "" for chunk in chunks) == "Checking."
    assert chunks[-1].function_calls is not None
    assert chunks[-1].function_calls[0].name == "get_weather"
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == 18
    assert fake_gemini.last_request.query == "alt=sse"
    raw = http.post(url(fake_gemini, "streamGenerateContent") + "?alt=sse", json=BODY)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in raw.text
    events = sse_data(raw.text)
    assert [event["candidates"][0].get("finishReason") for event in events] == [None] * 3 + ["STOP"]


def test_stream_without_sse_is_a_json_array(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    raw = http.post(url(fake_gemini, "streamGenerateContent"), json=BODY)
    chunks = json.loads(raw.text)
    assert isinstance(chunks, list) and len(chunks) == 4
    text = "".join(chunk["candidates"][0]["content"]["parts"][0]["text"] for chunk in chunks)
    assert text == "Fake answer to: Weather in Paris?"


def test_count_tokens(client: genai.Client, fake_gemini: FakeGemini) -> None:
    counted = client.models.count_tokens(model=MODEL, contents="count me please")
    assert counted.total_tokens == len(fake_gemini.last_request.body) // 4
    fake_gemini.count_tokens_result = 1234
    assert client.models.count_tokens(model=MODEL, contents="x").total_tokens == 1234


def test_embed_through_the_sdk(client: genai.Client, fake_gemini: FakeGemini) -> None:
    result = client.models.embed_content(
        model="gemini-embedding-001",
        contents=["alpha", "beta"],
        config=types.EmbedContentConfig(output_dimensionality=8, task_type="RETRIEVAL_QUERY"),
    )
    vectors = [embedding.values for embedding in result.embeddings or []]
    assert vectors == [
        embedding_vector("alpha", model="gemini-embedding-001", dimensions=8),
        embedding_vector("beta", model="gemini-embedding-001", dimensions=8),
    ]
    assert fake_gemini.last_request.endpoint == "batch_embed_contents"


def test_embed_content_endpoint(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    body = {"content": {"parts": [{"text": "alpha"}]}}
    answer = http.post(url(fake_gemini, "embedContent", "gemini-embedding-001"), json=body).json()
    assert len(answer["embedding"]["values"]) == 3072
    smaller = http.post(
        url(fake_gemini, "embedContent", "text-embedding-004"),
        json={**body, "outputDimensionality": 5},
    ).json()
    assert len(smaller["embedding"]["values"]) == 5


def test_models(client: genai.Client, http: httpx.Client, fake_gemini: FakeGemini) -> None:
    names = [model.name for model in client.models.list()]
    assert names == [model["name"] for model in fake_gemini.models]
    listed = http.get(f"{fake_gemini.base_url}/v1beta/models").json()["models"][0]
    assert listed["supportedGenerationMethods"] == ["generateContent", "countTokens"]
    assert listed["inputTokenLimit"] == 1048576
    one = http.get(f"{fake_gemini.base_url}/v1beta/models/gemini-2.5-pro")
    assert one.json()["displayName"] == "Gemini 2.5 Pro"
    missing = http.get(f"{fake_gemini.base_url}/v1beta/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


# --- request validation --------------------------------------------------------------------------

CALL_TURN = {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]}
RESULT_TURN = {
    "role": "user",
    "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 1}}}],
}
GEMINI_RULES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "unknown top-level key",
        {**BODY, "max_tokens": 5},
        {**BODY, "generationConfig": {"maxOutputTokens": 5}},
        'Unknown name "max_tokens"',
    ),
    (
        "unknown key in generationConfig",
        {**BODY, "generationConfig": {"maxTokens": 5}},
        {**BODY, "generationConfig": {"maxOutputTokens": 5}},
        'Unknown name "maxTokens"',
    ),
    (
        "unknown key in a part",
        {"contents": [{"role": "user", "parts": [{"text": "a", "type": "text"}]}]},
        BODY,
        'Unknown name "type"',
    ),
    (
        "snake_case keys are accepted too",
        {**BODY, "generationConfig": {"thinkingConfig": {"thinking_budgets": 5}}},
        {**BODY, "generation_config": {"thinking_config": {"thinking_budget": 5}}},
        'Unknown name "thinking_budgets"',
    ),
    (
        "unknown enum value",
        {**BODY, "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}},
        {**BODY, "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        "Invalid value 'REQUIRED'",
    ),
    (
        "schema keys of JSON Schema only",
        {
            **BODY,
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "object", "$schema": "x"}}
                    ]
                }
            ],
        },
        {
            **BODY,
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}],
        },
        'Unknown name "$schema"',
    ),
    (
        "strict types",
        {**BODY, "generationConfig": {"maxOutputTokens": "5"}},
        {**BODY, "generationConfig": {"maxOutputTokens": 5}},
        "expected int",
    ),
    (
        "inline data is base64",
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}],
                }
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}],
                }
            ]
        },
        "expected bytes",
    ),
    ("contents non-empty", {"contents": []}, BODY, "contents is not specified"),
    (
        "roles user or model",
        {"contents": [{"role": "assistant", "parts": [{"text": "a"}]}]},
        {"contents": [{"role": "model", "parts": [{"text": "a"}]}, *BODY["contents"]]},
        "Please use a valid role",
    ),
    (
        "functionResponse answers an earlier functionCall",
        {
            "contents": [
                *BODY["contents"],
                {**CALL_TURN, "parts": [{"functionCall": {"name": "other", "args": {}}}]},
                RESULT_TURN,
            ]
        },
        {"contents": [*BODY["contents"], CALL_TURN, RESULT_TURN]},
        "answers no earlier functionCall",
    ),
    (
        "at most 5 stop sequences",
        {**BODY, "generationConfig": {"stopSequences": list("abcdef")}},
        {**BODY, "generationConfig": {"stopSequences": list("abcde")}},
        "at most 5 stop sequences",
    ),
    (
        "temperature 0-2",
        {**BODY, "generationConfig": {"temperature": 2.1}},
        {**BODY, "generationConfig": {"temperature": 2.0}},
        "temperature: 2.1 is out of range",
    ),
    (
        "topP 0-1",
        {**BODY, "generationConfig": {"topP": 1.1}},
        {**BODY, "generationConfig": {"topP": 1}},
        "topP: 1.1 is out of range",
    ),
]


@pytest.mark.parametrize(
    ("rule", "wrong", "right", "reason"), GEMINI_RULES, ids=[rule[0] for rule in GEMINI_RULES]
)
def test_generate_validation_rule(
    http: httpx.Client,
    fake_gemini: FakeGemini,
    rule: str,
    wrong: dict[str, Any],
    right: dict[str, Any],
    reason: str,
) -> None:
    generate = url(fake_gemini, "generateContent")
    refused = refused_then_accepted(
        http, fake_gemini, generate, wrong=wrong, right=right, reason=reason
    )
    error = refused["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert reason in error["message"]


OTHER_RULES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "countTokens",
        "contents or generateContentRequest",
        {},
        BODY,
        "exactly one of contents or generateContentRequest",
    ),
    (
        "countTokens",
        "generateContentRequest names its model",
        {"generateContentRequest": BODY},
        {"generateContentRequest": {**BODY, "model": f"models/{MODEL}"}},
        "generateContentRequest.model: is required",
    ),
    (
        "embedContent",
        "content required",
        {"taskType": "RETRIEVAL_QUERY"},
        {"content": {"parts": [{"text": "a"}]}, "taskType": "RETRIEVAL_QUERY"},
        "content: is required",
    ),
    (
        "embedContent",
        "task types",
        {"content": {"parts": [{"text": "a"}]}, "taskType": "SEARCH"},
        {"content": {"parts": [{"text": "a"}]}, "taskType": "CLUSTERING"},
        "'SEARCH' is not one of",
    ),
    (
        "embedContent",
        "unknown key",
        {"content": {"parts": [{"text": "a"}]}, "dimensions": 3},
        {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
        'Unknown name "dimensions"',
    ),
    (
        "batchEmbedContents",
        "each request names the URL's model",
        {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]},
        {"requests": [{"model": f"models/{MODEL}", "content": {"parts": [{"text": "a"}]}}]},
        "the URL's model",
    ),
]


@pytest.mark.parametrize(
    ("action", "rule", "wrong", "right", "reason"),
    OTHER_RULES,
    ids=[f"{rule[0]}: {rule[1]}" for rule in OTHER_RULES],
)
def test_count_and_embed_validation_rule(
    http: httpx.Client,
    fake_gemini: FakeGemini,
    action: str,
    rule: str,
    wrong: dict[str, Any],
    right: dict[str, Any],
    reason: str,
) -> None:
    refused = refused_then_accepted(
        http, fake_gemini, url(fake_gemini, action), wrong=wrong, right=right, reason=reason
    )
    assert reason in refused["error"]["message"]


def test_walker_reports_paths() -> None:
    problems = gemini_rules.validate_generate_content(
        {"contents": [{"role": "user", "parts": [{"text": 5}]}]}
    )
    assert problems == ["contents[0].parts[0].text: expected str, got 5"]


# --- auth ----------------------------------------------------------------------------------------


def test_missing_key_is_a_403(fake_gemini: FakeGemini) -> None:
    response = httpx.post(url(fake_gemini, "generateContent"), json=BODY)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_refused_key_is_api_key_invalid(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.rejected_keys = {KEY}
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 400
    details = caught.value.details["error"]["details"]
    assert details[0]["reason"] == "API_KEY_INVALID"


def test_key_in_the_query_is_accepted_masked_and_hashed(fake_gemini: FakeGemini) -> None:
    response = httpx.post(url(fake_gemini, "generateContent") + f"?key={KEY}", json=BODY)
    assert response.status_code == 200
    record = fake_gemini.last_request
    assert record.key_sha256 == key_sha256(KEY)
    assert KEY not in record.query and record.query == f"key=***{key_sha256(KEY)[:12]}"


def test_header_key_is_masked_and_hashed(client: genai.Client, fake_gemini: FakeGemini) -> None:
    client.models.generate_content(model=MODEL, contents="hi")
    record = fake_gemini.last_request
    assert record.key_sha256 == key_sha256(KEY)
    assert record.header("x-goog-api-key") == f"***{key_sha256(KEY)[:12]}"
    assert (record.endpoint, record.model_id, record.outcome) == (
        "generate_content",
        MODEL,
        "completed",
    )
    assert record.parsed["contents"][0]["parts"] == [{"text": "hi"}]


# --- faults --------------------------------------------------------------------------------------


def test_resource_exhausted(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_fault(resource_exhausted(headers={"retry-after": "3"}))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.response.headers["retry-after"] == "3"  # type: ignore[union-attr]


def test_a_failed_key_gets_gemini_errors_wherever_it_is_sent(
    client: genai.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.fail_key(KEY, resource_exhausted(headers={"retry-after": "7"}))
    fake_gemini.add_fault(HttpError(status=500, message="queued"))
    generate = url(fake_gemini, "generateContent")
    for response in (
        httpx.post(generate, json=BODY, headers={"x-goog-api-key": KEY}),
        httpx.post(generate + f"?key={KEY}", json=BODY),
    ):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        error = response.json()["error"]
        assert (set(error), error["code"], error["status"]) == (
            {"code", "message", "status"},
            429,
            "RESOURCE_EXHAUSTED",
        )
        assert fake_gemini.last_request.key_sha256 == key_sha256(KEY)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    # The failing key took nothing from the queue: the next request with another key gets it.
    other = httpx.post(generate, json=BODY, headers={"x-goog-api-key": "AIza-other-key-0123"})
    assert (other.status_code, other.json()["error"]["message"]) == (500, "queued")
    fake_gemini.fail_key(KEY, None)
    client.models.generate_content(model=MODEL, contents="hi")
    assert fake_gemini.last_request.outcome == "completed"
    assert fake_gemini.last_request.fault is None


@pytest.mark.parametrize(("status", "google_status"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_server_errors(
    client: genai.Client, fake_gemini: FakeGemini, status: int, google_status: str
) -> None:
    fake_gemini.add_fault(HttpError(status=status, message="scripted"))
    with pytest.raises(genai_errors.ServerError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (status, google_status)


def test_dropped_connection(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_fault(DropConnection())
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(url(fake_gemini, "generateContent"), json=BODY)


def test_stream_cut(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_fault(StreamCut(after_events=1))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", url(fake_gemini, "streamGenerateContent") + "?alt=sse", json=BODY
        ) as response,
    ):
        for chunk in response.iter_bytes():
            received += chunk
    assert received.count(b"data: ") == 1


def test_in_stream_error(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_fault(
        ProviderStreamError(after_events=1, status=503, message="The model is overloaded."),
        ProviderStreamError(after_events=2, status=500, message="boom"),
    )
    events = sse_data(
        http.post(url(fake_gemini, "streamGenerateContent") + "?alt=sse", json=BODY).text
    )
    assert len(events) == 2
    assert events[-1] == {
        "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    }
    array = json.loads(http.post(url(fake_gemini, "streamGenerateContent"), json=BODY).text)
    assert array[-1] == {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}
    assert len(array) == 3


def test_unknown_route(http: httpx.Client, fake_gemini: FakeGemini) -> None:
    response = http.post(url(fake_gemini, "predict"), json=BODY)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
