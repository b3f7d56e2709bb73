"""Claude Code, the real CLI, through the gateway under uvicorn to the fake upstreams.

Each test runs `claude -p ... --output-format json` as a new user would: a fresh HOME, an empty
project directory, and nothing in its environment but `ANTHROPIC_BASE_URL=<gateway>/ak/<key>`, a
dummy Anthropic credential and the switches that keep it off the network. Then it checks what
Claude Code printed, what the fake upstream received from the gateway, and the usage event the
gateway recorded: on the direct path, on both Bedrock fallback modes (InvokeModel, Converse),
with Claude Code's default model and with a model from the seeded map, for a plain answer and a
tool-use round trip, and when no fallback applies.

The tests are skipped when the `claude` executable is not found (`CLAUDE_CODE_BIN`, else `PATH`);
`npm install -g @anthropic-ai/claude-code` installs it. `scripts/claude_code_check.sh` runs the
same check from the command line against `manage.py run_gateway`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.services import provider_credential_set
from proxy.models import ModelMapping
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.testing.fixtures import FakeProviders
from proxy.testing.provider_server import key_sha256
from proxy.testing.records import RecordedRequest
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import (
    VLLM_KEY,
    providers_fixture,  # noqa: F401 (the providers fixture)
)
from proxy.translation.model_ids import normalize_requested_model
from usage.recording import usage_writer

CLAUDE_BIN = os.environ.get("CLAUDE_CODE_BIN") or shutil.which("claude")

pytestmark = [
    pytest.mark.skipif(
        not CLAUDE_BIN,
        reason="the claude CLI was not found: set CLAUDE_CODE_BIN or put claude on PATH "
        "(npm install -g @anthropic-ai/claude-code)",
    ),
    pytest.mark.django_db(transaction=True),
]

ANSWER = "Hello from the fake upstream, through the gateway."
USAGE = {"input_tokens": 1234, "output_tokens": 56}
CLIENT_API_KEY = "sk-ant-api03-gateway-test-not-a-real-key"
CLIENT_AUTH_TOKEN = "sk-ant-oat01-gateway-test-not-a-real-token"
BEDROCK_SECRET = "bedrock-api-key-for-claude-code-tests"
# The credential's model for requested models the map lacks; Claude Code's default model usually
# is one of them, since new releases default to models newer than the seeded map.
FALLBACK_MODEL = "global.anthropic.claude-opus-4-6-v1"
MAPPED_MODEL = "claude-sonnet-4-6"
MAPPED_BEDROCK_MODEL = "global.anthropic.claude-sonnet-4-6"
BEDROCK_ENDPOINTS = {"invoke": "invoke-with-response-stream", "converse": "converse-stream"}
# Claude Code is given this long per run; its own retries of a 529 take a few seconds.
CLAUDE_TIMEOUT_SECONDS = 240

NOTE_TEXT = "The gateway relayed this note."
SIGNATURE = "EqQBCkgIARABGAIiQFakeSignatureForTheClaudeCodeTest" + "x" * 24


@dataclass
class ClaudeRun:
    returncode: int
    output: dict[str, Any]
    stderr: str

    @property
    def session_id(self) -> str:
        return str(self.output.get("session_id", ""))

    @property
    def result(self) -> str:
        return str(self.output.get("result", "")).strip()

    def describe(self) -> str:
        return f"claude exited {self.returncode}: {self.output}\nstderr:\n{self.stderr}"


RunClaude = Callable[..., ClaudeRun]


@pytest.fixture
def claude_bin() -> str:
    assert CLAUDE_BIN is not None
    if not os.access(CLAUDE_BIN, os.X_OK):
        pytest.fail(f"CLAUDE_CODE_BIN={CLAUDE_BIN} is not an executable")
    return CLAUDE_BIN


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project


@pytest.fixture
def claude(
    claude_bin: str,
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    tmp_path: Path,
    project_dir: Path,
) -> RunClaude:
    """Call to run `claude -p PROMPT --output-format json *args` against the gateway."""
    runs = 0

    def run(*args: str, prompt: str = "say hello", auth: str = "api_key") -> ClaudeRun:
        nonlocal runs
        runs += 1
        home = tmp_path / f"home{runs}"  # every run is a first run
        home.mkdir()
        env = {
            "PATH": os.pathsep.join(
                [str(Path(claude_bin).parent), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "HOME": str(home),
            "TERM": "dumb",
            "ANTHROPIC_BASE_URL": gateway_server.key_url(key_holder.plaintext),
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        if auth == "api_key":
            env["ANTHROPIC_API_KEY"] = CLIENT_API_KEY
        else:
            env["ANTHROPIC_AUTH_TOKEN"] = CLIENT_AUTH_TOKEN
        completed = subprocess.run(
            [claude_bin, "-p", prompt, "--output-format", "json", *args],
            env=env,
            cwd=project_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLAUDE_TIMEOUT_SECONDS,
            check=False,
        )
        try:
            output = json.loads(completed.stdout)
        except ValueError:
            pytest.fail(
                f"claude printed no JSON (exit {completed.returncode}):\n"
                f"{completed.stdout}\nstderr:\n{completed.stderr}"
            )
        return ClaudeRun(completed.returncode, output, completed.stderr)

    return run


@pytest.fixture
def scripted_fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(ANSWER, usage=USAGE)
    return fake_upstream_settings


def bedrock_credential_set(*, api_mode: str, fallback_model: str = FALLBACK_MODEL) -> None:
    provider_credential_set(
        provider="bedrock",
        secret=BEDROCK_SECRET,
        region="us-east-1",
        api_mode=api_mode,
        fallback_model=fallback_model,
    )
    invalidate_key_metadata()


def expected_bedrock_model(requested_model: str) -> str:
    """Where the gateway should send a requested model: the map's entry, else the fallback."""
    mapped = (
        ModelMapping.objects.filter(
            anthropic_model=normalize_requested_model(requested_model), enabled=True
        )
        .values_list("bedrock_model_id", flat=True)
        .first()
    )
    return mapped or FALLBACK_MODEL


def events_of(run: ClaudeRun, recorded_events: Any, at_least: int = 1) -> list[Any]:
    """The run's usage events, once there are ``at_least``: Claude Code may exit on the last
    byte of a stream a moment before the gateway has recorded that request (5 s at most)."""
    deadline = time.monotonic() + 5
    while True:
        recorded = recorded_events()
        events = [event for event in recorded if event.session_id == run.session_id]
        if len(events) >= at_least:
            return events
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # What a failure needs to be explained: every event there is, and where the writer put
    # what it did not write.
    writer = usage_writer()
    raise AssertionError(
        f"{len(events)} usage events of session {run.session_id}, expected {at_least}; "
        f"recorded: {[(e.session_id, e.request_id, e.provider, e.status_code) for e in recorded]}; "
        f"writer: written {writer.written}, spooled {writer.spooled}, "
        f"spool depth {writer.spool.depth()}, last failure {writer._failed_at}, "
        f"closed {writer._closed}"
    )


def assert_answered(run: ClaudeRun, text: str = ANSWER) -> None:
    assert run.returncode == 0, run.describe()
    assert not run.output.get("is_error"), run.describe()
    assert run.result == text
    usage = run.output["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        USAGE["input_tokens"],
        USAGE["output_tokens"],
    )


def assert_forwarded_from_claude_code(request: RecordedRequest, run: ClaudeRun) -> None:
    """The headers Claude Code sent reach Anthropic as they were."""
    assert request.header("anthropic-version") == "2023-06-01"
    assert "claude-code-20250219" in (request.header("anthropic-beta") or "").split(",")
    assert request.header("x-app") == "cli"
    assert (request.header("user-agent") or "").startswith("claude-cli/")
    assert request.header("x-claude-code-session-id") == run.session_id


# --- Anthropic answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["api_key", "auth_token"])
def test_claude_code_through_anthropic(
    claude: RunClaude,
    scripted_fake: FakeUpstream,
    key_holder: KeyHolder,
    recorded_events: Any,
    auth: str,
) -> None:
    run = claude(auth=auth)

    assert_answered(run)
    requests = scripted_fake.requests
    assert requests
    assert {(request.upstream, request.endpoint) for request in requests} == {
        ("anthropic", "messages")
    }
    for request in requests:
        assert_forwarded_from_claude_code(request, run)
        if auth == "api_key":
            assert request.header("x-api-key") == CLIENT_API_KEY
            assert request.header("authorization") is None
        else:
            assert request.header("authorization") == f"Bearer {CLIENT_AUTH_TOKEN}"
            assert request.header("x-api-key") is None
        assert request.json()["stream"] is True
    [event] = events_of(run, recorded_events)
    assert event.provider == "anthropic"
    assert event.status_code == 200
    assert event.fallback_reason == ""
    assert event.access_key_id == key_holder.key_id
    assert event.user_id == key_holder.user.id
    assert event.streamed
    assert event.requested_model == event.upstream_model == requests[-1].json()["model"]
    assert (event.input_tokens, event.output_tokens) == (
        USAGE["input_tokens"],
        USAGE["output_tokens"],
    )


# --- Anthropic overloaded: the gateway falls back to Bedrock --------------------------------------


@pytest.mark.parametrize("model", [None, MAPPED_MODEL], ids=["default_model", "mapped_model"])
@pytest.mark.parametrize("api_mode", ["invoke", "converse"])
def test_claude_code_falls_back_to_bedrock_on_529(
    claude: RunClaude,
    scripted_fake: FakeUpstream,
    recorded_events: Any,
    api_mode: str,
    model: str | None,
) -> None:
    bedrock_credential_set(api_mode=api_mode)
    scripted_fake.set_default_fault("anthropic", HttpError(status=529))

    run = claude(*(["--model", model] if model else []))

    assert_answered(run)
    anthropic = scripted_fake.requests_to("anthropic")
    bedrock = scripted_fake.requests_to("bedrock")
    assert anthropic, "the gateway did not try Anthropic first"
    assert all(isinstance(request.fault, HttpError) for request in anthropic)
    for request in anthropic:
        assert_forwarded_from_claude_code(request, run)
    requested = anthropic[0].json()["model"]
    if model is not None:
        assert requested == model
    upstream_model = expected_bedrock_model(requested)
    if model is not None:
        assert upstream_model == MAPPED_BEDROCK_MODEL
    assert bedrock
    for request in bedrock:
        assert request.endpoint == BEDROCK_ENDPOINTS[api_mode]
        assert request.model_id == upstream_model
        assert request.header("authorization") == f"Bearer {BEDROCK_SECRET}"
        assert request.header("x-api-key") is None
    [event] = events_of(run, recorded_events)
    assert event.provider == "bedrock"
    assert event.status_code == 200
    assert event.fallback_reason == "anthropic_529"
    assert event.requested_model == requested
    assert event.upstream_model == upstream_model
    assert (event.input_tokens, event.output_tokens) == (
        USAGE["input_tokens"],
        USAGE["output_tokens"],
    )


# --- a tool-use round trip, as Claude Code works --------------------------------------------------


def _tool_round_trip_answers(note: Path) -> list[ScriptedAnswer]:
    """The model reads a file with Claude Code's Read tool, then answers from it."""
    return [
        ScriptedAnswer(
            content=[
                {
                    "type": "thinking",
                    "thinking": "The user wants the note; read it.",
                    "signature": SIGNATURE,
                },
                {"type": "text", "text": "Reading the note."},
                {
                    "type": "tool_use",
                    "id": "toolu_01ReadTheNoteForTheGatewayTest",
                    "name": "Read",
                    "input": {"file_path": str(note)},
                },
            ],
            stop_reason="tool_use",
            usage={"input_tokens": 100, "output_tokens": 20},
        ),
        ScriptedAnswer.text(ANSWER, usage=USAGE),
    ]


def _tool_result_text(request: RecordedRequest) -> str:
    """Everything the last user turn of a request carries as a tool result, as one string."""
    body = request.json()
    last_user = [message for message in body["messages"] if message["role"] == "user"][-1]
    return json.dumps(last_user["content"])


@pytest.mark.parametrize("path", ["anthropic", "invoke", "converse"])
def test_claude_code_tool_round_trip(
    claude: RunClaude,
    fake_upstream_settings: FakeUpstream,
    project_dir: Path,
    recorded_events: Any,
    path: str,
) -> None:
    note = project_dir / "note.txt"
    note.write_text(NOTE_TEXT + "\n")
    fake = fake_upstream_settings
    fake.queue_answers(*_tool_round_trip_answers(note))
    if path != "anthropic":
        bedrock_credential_set(api_mode=path)
        fake.set_default_fault("anthropic", HttpError(status=529))

    run = claude("--allowedTools", "Read", prompt="What does note.txt say?")

    assert run.returncode == 0, run.describe()
    assert run.result == ANSWER
    upstream = "anthropic" if path == "anthropic" else "bedrock"
    answered = [request for request in fake.requests_to(upstream) if request.fault is None]
    assert len(answered) == 2, [request.path for request in fake.requests]
    first, second = answered
    assert NOTE_TEXT not in _tool_result_text(first)
    # Claude Code ran the tool and sent its result back, with the tool call's id.
    assert NOTE_TEXT in _tool_result_text(second)
    assert "toolu_01ReadTheNoteForTheGatewayTest" in json.dumps(second.json()["messages"])
    # The replayed assistant turn keeps its blocks in order, the signed thinking first.
    assistant = [message for message in second.json()["messages"] if message["role"] == "assistant"]
    if path == "converse":
        blocks = [next(iter(block)) for block in assistant[-1]["content"]]
        assert blocks == ["reasoningContent", "text", "toolUse"]
        assert assistant[-1]["content"][0]["reasoningContent"]["reasoningText"]["signature"] == (
            SIGNATURE
        )
    else:
        blocks = [block["type"] for block in assistant[-1]["content"]]
        assert blocks == ["thinking", "text", "tool_use"]
        assert assistant[-1]["content"][0]["signature"] == SIGNATURE
    events = [event for event in events_of(run, recorded_events) if event.status_code == 200]
    assert [event.provider for event in events] == [upstream, upstream]
    assert sum(event.output_tokens for event in events) == 20 + USAGE["output_tokens"]


# --- no fallback applies --------------------------------------------------------------------------


def test_claude_code_gets_anthropics_error_when_no_fallback_applies(
    claude: RunClaude, scripted_fake: FakeUpstream, recorded_events: Any
) -> None:
    # No Bedrock credential: every 529 goes back to Claude Code unchanged (it retries a few times,
    # then gives up), and each one is accounted.
    scripted_fake.set_default_fault("anthropic", HttpError(status=529, message="Overloaded"))

    run = claude()

    assert run.returncode != 0
    assert run.output.get("is_error") is True, run.describe()
    assert "529" in run.result or "Overloaded" in run.result, run.result
    anthropic = scripted_fake.requests_to("anthropic")
    assert anthropic
    assert not scripted_fake.requests_to("bedrock")
    events = events_of(run, recorded_events, at_least=len(anthropic))
    assert len(events) == len(anthropic)
    assert {(event.provider, event.status_code) for event in events} == {("anthropic", 529)}


# --- other providers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["openai/gpt-4o", "ollama/qwen3", "gemini/gemini-2.5-flash", "vllm/qwen2.5-coder-32b"],
)
def test_claude_code_on_an_openai_compatible_or_ollama_upstream(
    claude: RunClaude, providers: FakeProviders, recorded_events: Any, model: str
) -> None:
    """ANTHROPIC_MODEL=<provider>/<model>: Claude Code runs on that provider, translated."""
    provider, upstream_model = model.split("/", 1)
    upstream = providers.openai if provider == "vllm" else getattr(providers, provider)
    upstream.answer = ScriptedAnswer.text(ANSWER, usage=USAGE)
    run = claude("--model", model)

    assert_answered(run)
    requests = upstream.requests
    assert requests, run.describe()
    # Every request Claude Code made reached the upstream in a shape its real API accepts.
    assert all(request.valid for request in requests), [r.validation_errors for r in requests]
    if provider == "vllm":
        # The generic server's own key (``vllm``, played by the fake OpenAI), and the model
        # without the gateway's prefix.
        assert {request.key_sha256 for request in requests} == {key_sha256(VLLM_KEY)}
        assert {request.parsed["model"] for request in requests} == {upstream_model}
    events = events_of(run, recorded_events)
    assert events and {event.provider for event in events} == {provider}
    assert {event.requested_model for event in events} == {model}
