"""Tests of the fake Ollama upstream with httpx (there is no Ollama client in the locks): NDJSON
streams by default, whole objects with `"stream": false`, tool calls whole with object arguments,
embeddings and tags; every validation rule rejecting a wrong request and accepting the right one;
faults and records.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.testing import fake_gemini as fake_gemini_module
from proxy.testing import fake_ollama as fake_ollama_module
from proxy.testing import fake_openai as fake_openai_module
from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_ollama import FakeOllama
from proxy.testing.faults import DropConnection, HttpError, ProviderStreamError, StreamCut
from proxy.testing.provider_answers import embedding_vector
from proxy.testing.provider_server import key_sha256
from proxy.testing.rule_checks import refused_then_accepted

_fixture_server = fixtures.fake_ollama_server
_fixture_fake = fixtures.fake_ollama
_fixture_openai_server = fixtures.fake_openai_server
_fixture_openai = fixtures.fake_openai
_fixture_gemini_server = fixtures.fake_gemini_server
_fixture_gemini = fixtures.fake_gemini
_fixture_settings = fixtures.fake_providers_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama3.1"
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi there"}]}
TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "Weather needed.", "signature": "unused"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 20, "output_tokens": 15},
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_chat_streams_ndjson_by_default(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    response = http.post(f"{fake_ollama.base_url}/api/chat", json=CHAT)
    assert response.headers["content-type"] == "application/x-ndjson"
    objects = lines(response)
    assert all(not item["done"] for item in objects[:-1])
    text = "".join(item["message"]["content"] for item in objects)
    assert text == "Fake answer to: Hi there"
    final = objects[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 5
    assert final["prompt_eval_count"] == len(fake_ollama.last_request.body) // 4
    assert fake_ollama.last_request.streaming


def test_chat_without_stream_is_one_object(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.answer = TOOL_ANSWER
    body = http.post(f"{fake_ollama.base_url}/api/chat", json={**CHAT, "stream": False}).json()
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["message"]["content"] == "Checking."
    assert "thinking" not in body["message"]  # no `think` in the request
    assert [call["function"]["arguments"] for call in body["message"]["tool_calls"]] == [
        {"city": "Paris"},
        {},
    ]
    assert (body["prompt_eval_count"], body["eval_count"]) == (20, 15)


@pytest.mark.parametrize(
    ("model", "think", "reasons"),
    [
        ("qwen3:8b", None, True),  # a thinking model: on unless the request says otherwise
        ("deepseek-r1", None, True),
        ("qwen3:8b", False, False),
        ("llama3.1", None, False),  # a model without the capability
        ("llama3.1", True, True),
    ],
)
def test_thinking_follows_the_request_else_the_models_default(
    http: httpx.Client, fake_ollama: FakeOllama, model: str, think: bool | None, reasons: bool
) -> None:
    fake_ollama.answer = TOOL_ANSWER
    body: dict[str, Any] = {**CHAT, "model": model, "stream": False}
    if think is not None:
        body["think"] = think
    message = http.post(f"{fake_ollama.base_url}/api/chat", json=body).json()["message"]
    assert message.get("thinking") == ("Weather needed." if reasons else None)


def test_tool_calls_arrive_whole_in_one_line(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.answer = TOOL_ANSWER
    objects = lines(
        http.post(f"{fake_ollama.base_url}/api/chat", json={**CHAT, "think": True, "tools": TOOLS})
    )
    with_calls = [item for item in objects if item["message"].get("tool_calls")]
    assert len(with_calls) == 1
    assert [call["function"]["name"] for call in with_calls[0]["message"]["tool_calls"]] == [
        "get_weather",
        "get_time",
    ]
    thinking = "".join(item["message"].get("thinking", "") for item in objects)
    assert thinking == "Weather needed."
    assert objects.index(with_calls[0]) == len(objects) - 2


def test_length_done_reason(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.answer = ScriptedAnswer.text("cut", stop_reason="max_tokens")
    body = http.post(f"{fake_ollama.base_url}/api/chat", json={**CHAT, "stream": False}).json()
    assert body["done_reason"] == "length"


def test_generate(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    url = f"{fake_ollama.base_url}/api/generate"
    whole = http.post(url, json={"model": MODEL, "prompt": "Say hi", "stream": False}).json()
    assert whole["response"] == "Fake answer to: Say hi" and whole["done"] is True
    streamed = lines(http.post(url, json={"model": MODEL, "prompt": "Say hi"}))
    assert "".join(item["response"] for item in streamed) == "Fake answer to: Say hi"
    assert streamed[-1]["done_reason"] == "stop"


def test_embed(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    url = f"{fake_ollama.base_url}/api/embed"
    one = http.post(url, json={"model": "nomic-embed-text", "input": "alpha"}).json()
    assert len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 768
    many = http.post(
        url, json={"model": "nomic-embed-text", "input": ["alpha", "beta"], "dimensions": 4}
    ).json()
    assert many["embeddings"][0] == embedding_vector(
        "alpha", model="nomic-embed-text", dimensions=4
    )
    assert many["prompt_eval_count"] == 3


def test_tags_and_root(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    tags = http.get(f"{fake_ollama.base_url}/api/tags").json()
    assert [model["name"] for model in tags["models"]] == [
        "llama3.1:latest",
        "nomic-embed-text:latest",
    ]
    assert http.get(f"{fake_ollama.base_url}/").text == "Ollama is running"


# --- request validation --------------------------------------------------------------------------

OLLAMA_RULES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "chat",
        "max_tokens belongs in options.num_predict",
        {**CHAT, "max_tokens": 5},
        {**CHAT, "options": {"num_predict": 5}},
        "max_tokens: Extra inputs are not permitted",
    ),
    (
        "chat",
        "only documented options",
        {**CHAT, "options": {"max_tokens": 5}},
        {**CHAT, "options": {"num_predict": 5, "temperature": 0.2, "stop": ["x"]}},
        "options.max_tokens: Extra inputs",
    ),
    (
        "chat",
        "roles system, user, assistant, tool",
        {**CHAT, "messages": [{"role": "developer", "content": "a"}]},
        {**CHAT, "messages": [{"role": "system", "content": "a"}, *CHAT["messages"]]},
        "messages.0.role",
    ),
    (
        "chat",
        "images are base64 strings",
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": "a", "images": ["data:image/png;base64,iVBORw0KGgo="]}
            ],
        },
        {**CHAT, "messages": [{"role": "user", "content": "a", "images": ["iVBORw0KGgo="]}]},
        "an image must be base64",
    ),
    (
        "chat",
        "tool call arguments are objects",
        {
            **CHAT,
            "messages": [
                *CHAT["messages"],
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
            ],
        },
        {
            **CHAT,
            "messages": [
                *CHAT["messages"],
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                },
            ],
        },
        "arguments: Input should be a valid dictionary",
    ),
    (
        "chat",
        "unknown message field",
        {**CHAT, "messages": [{"role": "tool", "content": "20C", "name": "get_weather"}]},
        {**CHAT, "messages": [{"role": "tool", "content": "20C", "tool_name": "get_weather"}]},
        "messages.0.name: Extra inputs",
    ),
    (
        "chat",
        "tools have the function shape",
        {**CHAT, "tools": [{"type": "function", "name": "f", "parameters": {}}]},
        {**CHAT, "tools": TOOLS},
        "tools.0.name: Extra inputs",
    ),
    (
        "chat",
        "strict types",
        {**CHAT, "stream": "false"},
        {**CHAT, "stream": False},
        "stream: Input should be a valid boolean",
    ),
    (
        "chat",
        "think is a bool or a level",
        {**CHAT, "think": "max"},
        {**CHAT, "think": "high"},
        "think",
    ),
    ("chat", "model required", {"messages": CHAT["messages"]}, CHAT, "model: Field required"),
    (
        "generate",
        "unknown field",
        {"model": MODEL, "prompt": "a", "max_tokens": 3},
        {"model": MODEL, "prompt": "a", "options": {"num_predict": 3}},
        "max_tokens: Extra inputs",
    ),
    (
        "embed",
        "input required and non-empty",
        {"model": "nomic-embed-text", "input": []},
        {"model": "nomic-embed-text", "input": ["a"]},
        "input: must not be empty",
    ),
    (
        "embed",
        "unknown field",
        {"model": "nomic-embed-text", "input": "a", "prompt": "a"},
        {"model": "nomic-embed-text", "input": "a"},
        "prompt: Extra inputs",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "rule", "wrong", "right", "reason"),
    OLLAMA_RULES,
    ids=[f"{rule[0]}: {rule[1]}" for rule in OLLAMA_RULES],
)
def test_validation_rule(
    http: httpx.Client,
    fake_ollama: FakeOllama,
    endpoint: str,
    rule: str,
    wrong: dict[str, Any],
    right: dict[str, Any],
    reason: str,
) -> None:
    url = f"{fake_ollama.base_url}/api/{endpoint}"
    whole = {**right, "stream": False} if endpoint != "embed" else right
    body = refused_then_accepted(http, fake_ollama, url, wrong=wrong, right=whole, reason=reason)
    assert list(body) == ["error"] and reason in body["error"]


# --- records and faults --------------------------------------------------------------------------


def test_no_key_needed_but_one_sent_is_hashed(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    assert http.post(f"{fake_ollama.base_url}/api/chat", json=CHAT).status_code == 200
    assert fake_ollama.last_request.key_sha256 is None
    http.post(
        f"{fake_ollama.base_url}/api/chat", json=CHAT, headers={"authorization": "Bearer secret"}
    )
    record = fake_ollama.last_request
    assert record.key_sha256 == key_sha256("secret")
    assert "secret" not in json.dumps(record.headers)


def test_http_error_fault(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_fault(HttpError(status=404, message=f"model '{MODEL}' not found"))
    response = http.post(f"{fake_ollama.base_url}/api/chat", json=CHAT)
    assert response.status_code == 404
    assert response.json() == {"error": f"model '{MODEL}' not found"}


def test_a_failed_bearer_key_gets_an_ollama_error_every_time(
    http: httpx.Client, fake_ollama: FakeOllama
) -> None:
    # Ollama needs no key, but one behind a proxy or an OpenAI-compatible front gets a bearer
    # token: a pooled one can fail like any other, in Ollama's own error shape.
    url = f"{fake_ollama.base_url}/api/chat"
    whole = {**CHAT, "stream": False}
    failing = {"authorization": "Bearer pooled-key-1"}
    fake_ollama.fail_key("pooled-key-1", HttpError(status=429, message="too many requests"))
    for _ in range(2):  # not used up by one request, unlike a queued fault
        refused = http.post(url, json=whole, headers=failing)
        assert (refused.status_code, refused.json()) == (429, {"error": "too many requests"})
    assert fake_ollama.last_request.key_sha256 == key_sha256("pooled-key-1")
    assert fake_ollama.last_request.fault is not None
    other = http.post(url, json=whole, headers={"authorization": "Bearer pooled-key-2"})
    assert other.status_code == 200
    assert http.post(url, json=whole).status_code == 200  # keyless, as a local Ollama
    fake_ollama.fail_key("pooled-key-1", HttpError(status=503))
    assert http.post(url, json=whole, headers=failing).json() == {"error": "fake ollama error 503"}
    fake_ollama.fail_key("pooled-key-1", None)
    assert http.post(url, json=whole, headers=failing).status_code == 200


def test_in_stream_error_line(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_fault(ProviderStreamError(after_events=2, message="an error was encountered"))
    objects = lines(http.post(f"{fake_ollama.base_url}/api/chat", json=CHAT))
    assert len(objects) == 3
    assert objects[-1] == {"error": "an error was encountered"}


def test_stream_cut_and_dropped_connection(http: httpx.Client, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_fault(StreamCut(after_events=1), DropConnection())
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", f"{fake_ollama.base_url}/api/chat", json=CHAT) as response,
    ):
        for chunk in response.iter_bytes():
            received += chunk
    assert received.count(b"\n") == 1
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(f"{fake_ollama.base_url}/api/chat", json={**CHAT, "stream": False})


def test_providers_settings_point_at_the_fakes(
    fake_providers_settings: fixtures.FakeProviders, settings: Any
) -> None:
    fakes = fake_providers_settings
    assert fakes.openai.base_url == settings.GATEWAY_OPENAI_BASE_URL
    assert fakes.gemini.base_url == settings.GATEWAY_GEMINI_BASE_URL
    assert fakes.ollama.base_url == settings.GATEWAY_OLLAMA_BASE_URL
    assert len({fakes.openai.base_url, fakes.gemini.base_url, fakes.ollama.base_url}) == 3
    assert fakes.openai.requests == fakes.gemini.requests == fakes.ollama.requests == []


def test_command_line_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.testing.fake_ollama", "--port", "0", "--text-deltas", "3"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = httpx.post(f"{base_url}/api/chat", json=CHAT)
        assert len(lines(response)) == 4  # three pieces and the final line
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("module", [fake_gemini_module, fake_ollama_module, fake_openai_module])
def test_command_lines_refuse_bad_options(module: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Every fake's main shares the options and the serving code (the subprocess test above).
    with pytest.raises(SystemExit) as exited:
        module.main(["--text-deltas", "0"])
    assert exited.value.code == 2
    assert "text_deltas must be at least 1" in capsys.readouterr().err
