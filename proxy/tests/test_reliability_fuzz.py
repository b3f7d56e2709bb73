"""Bad input, fuzzed: bodies, headers, paths and keys against the live gateway, the request
translators directly, and the admin API against its own OpenAPI schema (schemathesis).

The property everywhere: never a 5xx the gateway made itself, and every error an Anthropic-shaped
JSON body. The fake upstream answers 200, so a 5xx is the gateway's unless the fake itself failed
on the request (its own 5xx or crash, which the gateway may relay); ``_check_live`` tells them
apart from the fake's request records.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential
from proxy.services import BadRequest, parse_body
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.testing.records import RecordedRequest
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import anthropic_error, sse_events
from proxy.translation.converse import (
    anthropic_to_converse,
    converse_count_tokens_body,
    tool_name_map,
)
from proxy.translation.invoke import anthropic_to_invoke
from usage.models import UsageEvent
from usage.recording import flush_usage_events, usage_writer

MODEL = "claude-sonnet-4-6"
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}
LIVE = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
PURE = settings(max_examples=400, deadline=None, database=None)

# --- strategies -----------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities too: Python's json module reads them
    | st.text(max_size=30)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
TEXT = st.text(max_size=40)


def _either(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A well-typed value most of the time, anything JSON can hold otherwise."""
    return st.one_of(strategy, strategy, ANY_JSON)


def _fields(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts holding any subset of the named fields."""
    return st.fixed_dictionaries({}, optional={k: _either(v) for k, v in strategies.items()})


CACHE_CONTROL = _fields(
    type=st.sampled_from(["ephemeral", "persistent"]), ttl=st.sampled_from(["5m", "1h", "7d"])
)
SOURCE = _fields(
    type=st.sampled_from(["base64", "url", "text", "content", "file"]),
    media_type=st.sampled_from(
        ["image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain", "image/tiff"]
    ),
    data=st.sampled_from(["", "aGVsbG8=", "!!not base64", "iVBORw0KGgo="]),
    url=TEXT,
    content=TEXT | st.lists(_fields(type=st.just("text"), text=TEXT), max_size=2),
)
BLOCK_TYPES = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "search_result",
    "mystery",
]
LEAF_BLOCK = st.builds(
    lambda block_type, rest: {"type": block_type, **rest},
    st.sampled_from(BLOCK_TYPES) | TEXT,
    _fields(
        text=TEXT,
        source=SOURCE,
        id=TEXT,
        name=TEXT,
        input=ANY_JSON,
        thinking=TEXT,
        signature=TEXT,
        data=TEXT,
        title=TEXT,
        context=TEXT,
        citations=_fields(enabled=st.booleans()),
        cache_control=CACHE_CONTROL,
    ),
)
BLOCK = st.one_of(
    LEAF_BLOCK,
    st.builds(
        lambda rest: {"type": "tool_result", **rest},
        _fields(
            tool_use_id=TEXT,
            content=TEXT | st.lists(LEAF_BLOCK, max_size=3),
            is_error=st.booleans(),
            cache_control=CACHE_CONTROL,
        ),
    ),
)
MESSAGE = _fields(
    role=st.sampled_from(["user", "assistant", "system", "tool"]),
    content=TEXT | st.lists(BLOCK, max_size=4),
)
TOOL = _fields(
    name=TEXT,
    description=TEXT,
    input_schema=_fields(type=st.just("object"), properties=ANY_JSON, required=ANY_JSON),
    type=st.sampled_from(["custom", "bash_20250124", "web_search_20250305"]),
    cache_control=CACHE_CONTROL,
    defer_loading=st.booleans(),
)
MODELS = st.sampled_from(
    [MODEL, "claude-opus-4-5-20251101", "claude-haiku-4-5", "claude-3-5-haiku-20241022"]
) | st.text(min_size=1, max_size=30)


def _body(required: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    return {**optional, **required}


PLAUSIBLE_BODIES = st.builds(
    _body,
    st.fixed_dictionaries(
        {
            "model": MODELS,
            "messages": st.lists(_either(MESSAGE), max_size=5),
            "max_tokens": _either(st.integers(min_value=-1, max_value=200_000)),
        }
    ),
    _fields(
        system=TEXT | st.lists(BLOCK, max_size=3),
        tools=st.lists(TOOL, max_size=3),
        tool_choice=_fields(
            type=st.sampled_from(["auto", "any", "tool", "none"]),
            name=TEXT,
            disable_parallel_tool_use=st.booleans(),
        ),
        temperature=st.floats(min_value=-1, max_value=3),
        top_p=st.floats(min_value=-1, max_value=2),
        top_k=st.integers(min_value=-5, max_value=1000),
        stop_sequences=st.lists(TEXT, max_size=6),
        metadata=_fields(user_id=TEXT),
        thinking=_fields(
            type=st.sampled_from(["enabled", "adaptive", "disabled"]),
            budget_tokens=st.integers(min_value=-1, max_value=300_000),
        ),
        output_config=_fields(effort=st.sampled_from(["low", "medium", "high", "max"])),
        context_management=ANY_JSON,
        cache_control=CACHE_CONTROL,
        service_tier=TEXT,
    ),
)
BEDROCK_MODEL_IDS = st.sampled_from(
    [
        "global.anthropic.claude-sonnet-4-6",
        "us.anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x",
    ]
)
BETAS = st.lists(
    st.sampled_from(
        [
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "token-efficient-tools-2025-02-19",
            "claude-code-20250219",
        ]
    )
    | TEXT,
    max_size=3,
)


def _encode(body: Any, ascii_only: bool) -> bytes:
    # Without ASCII escapes, lone surrogates become bytes that are not valid UTF-8.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(_encode, ANY_JSON, st.booleans()),
    st.builds(_encode, PLAUSIBLE_BODIES, st.booleans()),
    st.builds(_encode, PLAUSIBLE_BODIES, st.booleans()).map(lambda raw: raw[: len(raw) // 2]),
    st.builds(
        lambda raw: raw.replace(b'"', b'"\xff\xfe', 1),
        st.builds(_encode, PLAUSIBLE_BODIES, st.just(True)),
    ),
    st.builds(
        lambda body, stream: _encode({**body, "stream": stream}, True),
        PLAUSIBLE_BODIES,
        st.booleans(),
    ),
)


# --- the translators, directly --------------------------------------------------------------


def _accepted(body: dict[str, Any]) -> dict[str, Any] | None:
    """The body as the gateway would hand it to a translator, or None if it would refuse it."""
    try:
        return parse_body(json.dumps(body).encode(), require_max_tokens=True)
    except BadRequest:
        return None


@PURE
@given(body=PLAUSIBLE_BODIES, model_id=BEDROCK_MODEL_IDS, betas=BETAS)
def test_converse_translation_never_raises(
    body: dict[str, Any], model_id: str, betas: list[str]
) -> None:
    accepted = _accepted(body)
    if accepted is None:
        return
    payload = anthropic_to_converse(accepted, model_id=model_id, betas=betas)
    json.dumps(payload)  # the gateway sends it as JSON
    json.dumps(converse_count_tokens_body(accepted, betas=betas))
    tool_name_map(accepted)


@PURE
@given(body=PLAUSIBLE_BODIES, model_id=st.none() | BEDROCK_MODEL_IDS, betas=BETAS)
def test_invoke_translation_never_raises(
    body: dict[str, Any], model_id: str | None, betas: list[str]
) -> None:
    accepted = _accepted(body)
    if accepted is None:
        return
    payload = anthropic_to_invoke(accepted, betas=betas, model_id=model_id)
    json.dumps(payload)
    assert "model" not in payload and "stream" not in payload


@PURE
@given(extra=st.dictionaries(st.text(max_size=12), ANY_JSON, max_size=6), messages=ANY_JSON)
def test_translators_take_any_json_in_any_field(extra: dict[str, Any], messages: Any) -> None:
    body = {**extra, "model": MODEL, "max_tokens": 10, "messages": messages}
    accepted = _accepted(body)
    if accepted is None:
        return
    json.dumps(anthropic_to_converse(accepted, model_id="global.anthropic.x", betas=[]))
    json.dumps(anthropic_to_invoke(accepted, betas=[]))


@pytest.mark.parametrize("ttl", [[], {}, ["1h"], 3600, None, "2h", "1h"])
@pytest.mark.parametrize("where", ["top_level", "system_block", "message_block"])
def test_any_cache_control_ttl_is_translated(where: str, ttl: Any) -> None:
    cache_control = {"type": "ephemeral", "ttl": ttl}
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
    }
    if where == "top_level":
        body["cache_control"] = cache_control
    elif where == "system_block":
        body["system"] = [{"type": "text", "text": "s", "cache_control": cache_control}]
    else:
        body["messages"][0]["content"][0]["cache_control"] = cache_control
    payload = anthropic_to_converse(body, model_id="global.anthropic.claude-sonnet-4-6", betas=[])
    points = [part for part in json.dumps(payload).split('"cachePoint"')[1:]]
    assert len(points) == 1
    anthropic_to_invoke(body, betas=[])


@pytest.mark.parametrize(
    ("tools", "tool_choice"),
    [
        ([{"name": ["t"], "input_schema": {}}], {"type": "tool", "name": "t"}),
        ([{"name": "t", "input_schema": {}}], {"type": "tool", "name": ["t"]}),
        ([{"name": {"n": 1}, "input_schema": {}}], {"type": "tool", "name": {"n": 1}}),
    ],
    ids=["list-tool-name", "list-choice-name", "dict-names"],
)
def test_unhashable_tool_names_are_translated(tools: list[Any], tool_choice: Any) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "tools": tools,
        "tool_choice": tool_choice,
    }
    json.dumps(anthropic_to_invoke(body, betas=[]))


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


NESTING_PLACES = {
    "extra_field": lambda deep: {"unknown": deep},
    "tool_schema": lambda deep: {"tools": [{"name": "t", "input_schema": {"a": deep}}]},
    "tool_use_input": lambda deep: {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "t", "input": {"a": deep}}],
            },
        ]
    },
    "metadata": lambda deep: {"metadata": {"user_id": deep}},
    "context_management": lambda deep: {"context_management": deep},
}


@pytest.mark.parametrize("place", list(NESTING_PLACES))
@pytest.mark.parametrize("depth", [50, 300, 600, 900, 950, 990])
def test_translators_survive_deep_nesting_the_parser_accepts(place: str, depth: int) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    body.update(NESTING_PLACES[place](_nested(depth)))
    try:
        raw = json.dumps(body).encode()
    except RecursionError:
        pytest.skip("too deep for the encoder of this test")
    try:
        accepted = parse_body(raw, require_max_tokens=True)
    except BadRequest as refused:
        assert refused.status == 400
        return
    anthropic_to_converse(accepted, model_id="global.anthropic.claude-sonnet-4-6", betas=[])
    anthropic_to_invoke(accepted, betas=[])


# --- the live gateway -----------------------------------------------------------------------


@pytest.fixture
def private_spool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fuzzed requests make odd usage events: if one cannot be stored, its spool file stays in
    this test's directory instead of the shared one other test runs replay from."""
    monkeypatch.setattr(usage_writer().spool, "directory", tmp_path / "spool")


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream, private_spool: None) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Fuzzed.", usage={"input_tokens": 3, "output_tokens": 1}
    )
    return fake_upstream_settings


def _fake_failed(requests: list[RecordedRequest]) -> bool:
    """The fake itself failed on one of these (a 5xx, or a crash before it answered)."""
    return any(request.status is None or request.status >= 500 for request in requests)


def _check_live(response: httpx.Response, new_requests: list[RecordedRequest]) -> None:
    request = response.request
    status = response.status_code
    where = f"{request.method} {request.url.raw_path[:200]!r} -> {status}"
    if _fake_failed(new_requests) and status >= 500:
        return  # relayed from the fake
    assert status < 500, (where, response.content[:300])
    if status >= 400 and request.method != "HEAD":
        try:
            anthropic_error(response.content, response.headers.get("content-type", ""))
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    if status == 200 and response.headers.get("content-type", "").startswith("text/event-stream"):
        events = sse_events(response.text)
        assert events and events[-1][0] == "message_stop", (where, events[-3:])


def _send(gateway: GatewayServer, key: str, raw: bytes, fake: FakeUpstream) -> None:
    before = len(fake.requests)
    response = httpx.post(
        gateway.key_url(key) + "/v1/messages",
        content=raw,
        headers={**CLIENT_HEADERS, "content-type": "application/json"},
        timeout=20,
    )
    _check_live(response, fake.requests[before:])


@pytest.mark.django_db(transaction=True)
def test_fuzzed_bodies_straight_to_anthropic(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    @LIVE
    @given(raw=RAW_BODIES)
    def run(raw: bytes) -> None:
        _send(gateway_server, key_holder.plaintext, raw, fake)

    run()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_fuzzed_bodies_through_the_bedrock_fallback(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    mode: str,
) -> None:
    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()
    fake.set_default_fault("anthropic", HttpError(status=529))

    @LIVE
    @given(raw=RAW_BODIES)
    def run(raw: bytes) -> None:
        _send(gateway_server, key_holder.plaintext, raw, fake)

    run()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "fallback"])
@pytest.mark.parametrize("place", list(NESTING_PLACES))
@pytest.mark.parametrize("depth", [900, 990, 5_000, 100_000])
def test_deeply_nested_bodies_live(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    place: str,
    depth: int,
    fallback: bool,
) -> None:
    if fallback:
        fake.set_default_fault("anthropic", HttpError(status=529))
    nested = b"[" * depth + b"]" * depth
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    body.update(NESTING_PLACES[place]("NESTED"))
    raw = json.dumps(body).encode().replace(b'"NESTED"', nested)
    _send(gateway_server, key_holder.plaintext, raw, fake)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "fallback"])
def test_huge_strings_within_the_limit_are_served(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    fallback: bool,
) -> None:
    if fallback:
        fake.set_default_fault("anthropic", HttpError(status=529))
    huge = "é" * (4 * 1024 * 1024)
    body = {
        "model": MODEL,
        "max_tokens": 10,
        "system": huge,
        "messages": [{"role": "user", "content": [{"type": "text", "text": huge}]}],
    }
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json=body,
        headers=CLIENT_HEADERS,
        timeout=30,
    )
    assert response.status_code == 200, response.text[:300]


@pytest.mark.django_db(transaction=True)
def test_oversized_chunked_bodies_get_413(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, settings: Any
) -> None:
    """No content-length to refuse early: the limit must hold on the bytes actually read."""
    settings.GATEWAY_MAX_BODY_BYTES = 4096
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps(
        {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 9000}]}
    ).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        content=chunks(),
        headers=CLIENT_HEADERS,
        timeout=10,
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert anthropic_error(response.content)["error"]["type"] == "request_too_large"
    assert not fake.requests


# --- headers, paths and keys ----------------------------------------------------------------

# Header values as HTTP allows them: visible ASCII, spaces and bytes from 0x80 up (obs-text), no
# CR/LF or other controls, up to 64 KiB.
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
HEADER_VALUES = st.one_of(
    st.text(HEADER_CHARS, max_size=60).map(str.strip),
    st.builds(
        lambda unit, size: (unit * (size // max(len(unit), 1) + 1))[:size].strip() or "x",
        st.text(HEADER_CHARS, min_size=1, max_size=8),
        st.integers(min_value=1024, max_value=64 * 1024),
    ),
)
HEADER_NAMES = st.sampled_from(
    [
        "x-api-key",
        "authorization",
        "anthropic-version",
        "anthropic-beta",
        "x-claude-code-session-id",
        "user-agent",
        "x-app",
        "content-type",
        "accept",
        "accept-encoding",
        "x-forwarded-for",
        "x-fake-text-deltas",
        "x-random-header",
    ]
)


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@pytest.fixture(scope="module")
def httptools_gateway() -> Iterator[GatewayServer]:
    """The gateway under uvicorn's httptools parser, as run_gateway serves it. (The session's
    server uses h11, which refuses header sections over 16 KiB before the application runs.)"""
    from gateway_project.asgi import application

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = _QuietServer(
        uvicorn.Config(
            application, lifespan="off", log_level="warning", loop="asyncio", http="httptools"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the httptools gateway did not start")
        time.sleep(0.02)
    yield GatewayServer(base_url=f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(10)


@pytest.mark.django_db(transaction=True)
def test_fuzzed_headers(
    httptools_gateway: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    body = json.dumps(
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    ).encode()

    @LIVE
    @given(
        headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
        stream=st.booleans(),
        fallback=st.booleans(),
    )
    def run(headers: dict[str, str], stream: bool, fallback: bool) -> None:
        fake.set_default_fault("anthropic", HttpError(status=529) if fallback else None)
        raw = body.replace(b"}", b',"stream":true}', 1) if stream else body
        before = len(fake.requests)
        response = httpx.post(
            httptools_gateway.key_url(key_holder.plaintext) + "/v1/messages",
            content=raw,
            headers={name: value.encode("latin-1") for name, value in headers.items()},
            timeout=20,
        )
        _check_live(response, fake.requests[before:])

    run()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("header", ["user-agent", "anthropic-beta", "x-claude-code-session-id"])
def test_non_ascii_header_values_are_forwarded(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, header: str
) -> None:
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
        headers={**CLIENT_HEADERS, header: "caf\xe9".encode("latin-1")},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    assert fake.last_request.header(header) == "caf\xe9"


PATH_SEGMENTS = st.lists(
    st.one_of(
        st.sampled_from(
            ["v1", "messages", "count_tokens", "models", "..", ".", "", "api", "hello"]
        ),
        st.text(max_size=12),
    ),
    max_size=4,
).map(lambda segments: "/".join(quote(segment, safe="") for segment in segments))
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])


@pytest.mark.django_db(transaction=True)
def test_fuzzed_paths_and_keys(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    body = json.dumps(
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    )

    @LIVE
    @given(
        key=st.one_of(
            st.just(key_holder.plaintext),
            st.just(key_holder.plaintext[:12]),
            st.text(max_size=80),
            st.builds(lambda tail: "gw_abcdefgh_" + tail, st.text(max_size=50)),
        ),
        path=PATH_SEGMENTS,
        query=st.text(max_size=20),
        method=METHODS,
    )
    def run(key: str, path: str, query: str, method: str) -> None:
        url = f"{gateway_server.base_url}/ak/{quote(key, safe='')}/{path}?{quote(query, safe='=&')}"
        if not httpx.URL(url).raw_path.startswith(b"/ak/"):
            return  # dot segments led the client's URL out of the proxy's prefix
        before = len(fake.requests)
        response = httpx.request(method, url, content=body, headers=CLIENT_HEADERS, timeout=20)
        _check_live(response, fake.requests[before:])

    run()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
def test_undeclared_methods_get_an_anthropic_error(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, method: str
) -> None:
    response = httpx.request(method, gateway_server.key_url(key_holder.plaintext) + "/v1/messages")
    assert response.status_code == 405
    anthropic_error(response.content, response.headers.get("content-type", ""))


# --- odd text in fields that end up in usage records -----------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "model_json",
    [r'"claude-\ud800"', r'"claude-\u0000x"', r'"claude-\u200b\u202e"'],
    ids=["lone-surrogate", "nul", "format-chars"],
)
def test_odd_model_names_do_not_cost_other_requests_their_usage(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    model_json: str,
) -> None:
    """One request with a model name the database cannot store as it is (a lone surrogate;
    NUL on PostgreSQL) must not take down the usage events it shares a write batch with."""
    url = gateway_server.key_url(key_holder.plaintext) + "/v1/messages"
    headers = {**CLIENT_HEADERS, "content-type": "application/json"}
    good = json.dumps(
        {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    )
    odd = good.replace(f'"{MODEL}"', model_json)
    for raw in (good, odd, good):
        response = httpx.post(url, content=raw.encode(), headers=headers, timeout=10)
        assert response.status_code < 600
    flush_usage_events()
    stored = list(UsageEvent.objects.values_list("requested_model", flat=True))
    assert stored.count(MODEL) == 2, stored
    assert len(stored) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tokens", [2**63, 2**70], ids=["2^63", "2^70"])
def test_absurd_upstream_usage_does_not_cost_other_requests_their_usage(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream, tokens: int
) -> None:
    def answer(input_tokens: int) -> ScriptedAnswer:
        return ScriptedAnswer.text("ok", usage={"input_tokens": input_tokens, "output_tokens": 1})

    fake.queue_answers(answer(1), answer(tokens), answer(1))
    url = gateway_server.key_url(key_holder.plaintext) + "/v1/messages"
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    for stream in (False, True, False):
        assert httpx.post(url, json={**body, "stream": stream}, headers=CLIENT_HEADERS).is_success
    flush_usage_events()
    assert UsageEvent.objects.filter(input_tokens=1).count() == 2
    assert UsageEvent.objects.count() == 3


# --- the admin API against its OpenAPI schema -----------------------------------------------

ADMIN_TOKEN = "admin-api-token-for-schemathesis"


def _admin_schema() -> Any:
    from gateway_project.api import admin_api

    return schemathesis.openapi.from_dict(admin_api.get_openapi_schema())


# Loaded at import: schemathesis' lazy fixture loader needs pytest internals pytest 9 removed.
admin_schema = _admin_schema()


@pytest.fixture
def admin_token(settings: Any) -> str:
    settings.GATEWAY_ADMIN_API_TOKEN = ADMIN_TOKEN
    return ADMIN_TOKEN


@pytest.mark.django_db(transaction=True)
@admin_schema.parametrize()
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_schema(
    case: Any, gateway_server: GatewayServer, admin_token: str
) -> None:
    case.call_and_validate(
        base_url=gateway_server.base_url,
        headers={"Authorization": f"Bearer {admin_token}"},
        # The schema types tz, granularity and order_by as free strings and documents the 400
        # that names a bad one: a schema-valid value may rightly be refused. Schema-violating
        # requests are still sent (a 500 or an undocumented status fails), but whether each is
        # refused is not judged here: the valid token above replaces a mutated Authorization
        # header, and a query string cannot tell a mutated array or object from a string, so
        # some "invalid" requests are valid ones on the wire. The API's tests check its 400s.
        excluded_checks=[
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )
