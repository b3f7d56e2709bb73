"""Tests of the benchmark's OpenAI surface and relay floor: the relay against real local fakes,
the load generator's OpenAI stream timing, the OpenAI targets and bodies, pausing shared
servers, the floor and OpenAI tables of the report, the profile groups and the gateway set-up.

Nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench import loadgen
from bench.proxy import gateway_setup, profile, relay, report
from bench.proxy.fake import BenchFakeUpstream
from bench.proxy.processes import REPO, Server, free_port, snapshot_source
from bench.proxy.targets import (
    OPENAI,
    TRANSLATED_MODEL,
    Target,
    openai_request_body,
    openai_targets,
    relay_target,
)
from proxy.testing.fake_openai import FakeOpenAI
from proxy.testing.faults import HttpError

OPENAI_BODY = json.loads(openai_request_body(stream=False))
MESSAGES_BODY = json.dumps(
    {"model": "claude-x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
).encode()


@pytest.fixture
def anthropic_fake():
    with BenchFakeUpstream(text_deltas=5) as server:
        yield server


@pytest.fixture
def openai_fake():
    with FakeOpenAI(text_deltas=5) as server:
        yield server


@contextlib.asynccontextmanager
async def running_relay(routes: dict[str, str]) -> AsyncIterator[str]:
    server = await relay.start_server("127.0.0.1", 0, routes)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def _routes(anthropic_fake: BenchFakeUpstream, openai_fake: FakeOpenAI) -> dict[str, str]:
    return {"/v1/chat/": openai_fake.base_url, "/": anthropic_fake.base_url}


# --- the relay ------------------------------------------------------------------------------------


async def test_relay_forwards_each_surface_to_its_upstream(anthropic_fake, openai_fake):
    async with (
        running_relay(_routes(anthropic_fake, openai_fake)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        chat = await client.post(
            "/v1/chat/completions", json=OPENAI_BODY, headers={"authorization": "Bearer k"}
        )
        messages = await client.post(
            "/v1/messages", content=MESSAGES_BODY, headers={"x-api-key": "k"}
        )
        health = await client.get("/healthz")
    assert chat.status_code == 200
    assert chat.json()["object"] == "chat.completion"
    assert chat.headers["x-request-id"].startswith("req_fake")  # the upstream's own headers
    assert messages.status_code == 200
    assert messages.json()["type"] == "message"
    assert (health.status_code, health.text) == (200, "ok")


async def test_relay_passes_errors_through_unchanged(anthropic_fake, openai_fake):
    anthropic_fake.set_default_fault("anthropic", HttpError(status=529))
    async with (
        running_relay(_routes(anthropic_fake, openai_fake)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        refused = await client.post("/v1/chat/completions", json=OPENAI_BODY)  # no key
        overloaded = await client.post("/v1/messages", content=MESSAGES_BODY)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"


async def test_relay_streams_every_event_and_keeps_upstream_connections(
    anthropic_fake, openai_fake
):
    async with running_relay(_routes(anthropic_fake, openai_fake)) as base:
        target = loadgen.Target.from_url(base + "/v1/chat/completions")
        raw = loadgen.build_request(
            target,
            openai_request_body(stream=True).replace(
                b"delta_interval_ms=20", b"delta_interval_ms=1"
            ),
            [("authorization", "Bearer k"), ("content-type", "application/json")],
        )
        result = await loadgen.measure_streams(
            target, raw, concurrency=2, streams=6, warmup=0, expect_deltas=5, events=OPENAI
        )
    assert result["ok"] == 6
    assert result["errors"] == 0
    assert result["gaps"] == 6 * 4
    # Two client connections at a time: the relay opened at most two upstream connections.
    assert openai_fake.connections_open <= 2


async def test_relay_retries_a_kept_connection_the_upstream_closed(anthropic_fake):
    routes = {"/": anthropic_fake.base_url}
    relay_server = relay.Relay(routes)
    server = await asyncio.start_server(relay_server.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.post("/v1/messages", content=MESSAGES_BODY)
            pool = next(iter(relay_server.pools.values()))
            assert len(pool.idle) == 1
            # The upstream's side of the kept connection goes away without the relay seeing it.
            reader, writer = pool.idle[0]
            reader.at_eof = lambda: False  # type: ignore[method-assign]
            writer.is_closing = lambda: False  # type: ignore[method-assign]
            writer.transport.abort()
            await asyncio.sleep(0.05)
            second = await client.post("/v1/messages", content=MESSAGES_BODY)
    finally:
        server.close()
        await server.wait_closed()
    assert first.status_code == second.status_code == 200
    assert second.json()["type"] == "message"


async def test_relay_refuses_chunked_requests():
    async with running_relay({"/": "http://127.0.0.1:9"}) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 501 ")


async def test_relay_body_framings():
    class Sink:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        async def drain(self) -> None:
            return None

    def reader_of(data: bytes) -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return reader

    chunked = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
    sink = Sink()
    head = relay.parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert await relay.relay_body(head, 200, reader_of(chunked + b"NEXT"), sink) is True
    assert sink.data == chunked  # the framing bytes as they came, nothing after the last chunk

    sink = Sink()
    head = relay.parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    assert await relay.relay_body(head, 200, reader_of(b"abcdEXTRA"), sink) is True
    assert sink.data == b"abcd"

    sink = Sink()
    head = relay.parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    assert head.close
    assert await relay.relay_body(head, 200, reader_of(b"until the end"), sink) is False
    assert sink.data == b"until the end"

    head = relay.parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert await relay.relay_body(head, 204, reader_of(b""), Sink()) is True

    head = relay.parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
    with pytest.raises(asyncio.IncompleteReadError):
        await relay.relay_body(head, 200, reader_of(b"short"), Sink())


def test_relay_routes_by_longest_prefix_and_rejects_bad_options():
    routes = relay.Relay(
        relay.parse_routes(["/=http://127.0.0.1:1", "/v1/chat/=http://127.0.0.1:2/"])
    ).routes
    assert relay.pick_upstream(routes, "/v1/chat/completions") == ("127.0.0.1", 2)
    assert relay.pick_upstream(routes, "/v1/messages") == ("127.0.0.1", 1)
    with pytest.raises(relay.Unsupported):
        relay.pick_upstream(relay.Relay({"/v1/": "http://h:1"}).routes, "/other")
    with pytest.raises(ValueError, match="PREFIX"):
        relay.parse_routes(["v1=http://h:1"])
    with pytest.raises(ValueError, match="http://"):
        relay.Relay({"/": "https://h:1"})
    with pytest.raises(SystemExit):
        relay.main(["--upstream", "nonsense"])
    with pytest.raises(SystemExit):
        relay.main([])


def test_relay_command_announces_its_url_and_serves(anthropic_fake):
    command = [
        sys.executable,
        "-m",
        "bench.proxy.relay",
        "--upstream",
        f"/={anthropic_fake.base_url}",
    ]
    process = subprocess.Popen(  # noqa: S603 - a fixed command
        command, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        answer = httpx.post(base_url + "/v1/messages", content=MESSAGES_BODY, timeout=10)
    finally:
        process.terminate()
        process.wait(10)
    assert answer.status_code == 200
    assert answer.json()["type"] == "message"


def test_a_restarted_server_is_a_new_process_on_the_same_port(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "bench.proxy.relay", "--port", str(port), "--upstream",
               "/=http://127.0.0.1:9"]  # fmt: skip
    server = Server("relay", command, dict(os.environ), tmp_path / "relay.log")
    server.base_url = f"http://127.0.0.1:{port}"
    server.start()
    try:
        server.wait_http("/healthz", timeout=30)
        first = server.pid
        server.restart("/healthz", timeout=30)
        assert server.pid != first
        assert httpx.get(server.base_url + "/healthz", timeout=5).text == "ok"
    finally:
        server.stop()
    assert server.process is None


def test_the_snapshot_holds_the_work_tree_code_and_nothing_else(tmp_path):
    copy = snapshot_source(tmp_path / "src")
    assert (copy / "manage.py").read_bytes() == (REPO / "manage.py").read_bytes()
    assert (copy / "bench" / "proxy" / "relay.py").is_file()
    assert (copy / "gateway_project" / "asgi.py").is_file()
    assert not (copy / ".venv").exists()
    assert not (copy / ".git").exists()
    assert not (copy / "bench" / "results").exists()  # results are written, never run


# --- the load generator on OpenAI streams ---------------------------------------------------------


def test_openai_text_deltas_are_chunks_with_content():
    def event(data: object) -> bytes:
        return b"data: " + json.dumps(data).encode()

    def chunk(delta: dict) -> dict:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}

    assert loadgen.openai_text_delta(event(chunk({"content": "Hi"})))
    assert not loadgen.openai_text_delta(event(chunk({"role": "assistant", "content": ""})))
    assert not loadgen.openai_text_delta(event(chunk({})))
    assert not loadgen.openai_text_delta(event({"choices": [], "usage": {"total_tokens": 3}}))
    assert not loadgen.openai_text_delta(b"data: [DONE]")
    assert not loadgen.openai_text_delta(b'data: {"content": broken')
    assert not loadgen.openai_text_delta(b'event: content_block_delta\ndata: {"content": 1}')
    assert loadgen.anthropic_text_delta(b"event: content_block_delta\ndata: {}")


async def test_openai_streams_are_timed_per_text_chunk(openai_fake):
    target = loadgen.Target.from_url(openai_fake.base_url + "/v1/chat/completions")
    body = openai_request_body(stream=True).replace(b"delta_interval_ms=20", b"delta_interval_ms=1")
    raw = loadgen.build_request(
        target, body, [("authorization", "Bearer k"), ("content-type", "application/json")]
    )
    result = await loadgen.measure_streams(
        target, raw, concurrency=2, streams=4, warmup=0, expect_deltas=5, events=OPENAI
    )
    assert (result["ok"], result["errors"], result["gaps"]) == (4, 0, 4 * 4)
    # Timed as Anthropic events, no chunk is a delta: every stream is incomplete.
    wrong = await loadgen.measure_streams(
        target, raw, concurrency=1, streams=2, warmup=0, expect_deltas=5
    )
    assert (wrong["ok"], wrong["errors"]) == (0, 2)


def test_loadgen_cli_takes_the_event_dialect(tmp_path, openai_fake, capsys, monkeypatch):
    # uvloop's policy would be global for the process, the fake's thread included.
    monkeypatch.setattr(loadgen, "_install_fast_loop", lambda: None)
    body = tmp_path / "body.json"
    body.write_bytes(openai_request_body(stream=True).replace(b"=20", b"=1"))
    url = openai_fake.base_url + "/v1/chat/completions"
    loadgen.main(["stream", "--url", url, "--body-file", str(body), "--header",
                  "authorization:Bearer k", "--streams", "2", "--warmup", "0", "--events",
                  "openai", "--expect-deltas", "5"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["ok"] == 2
    with pytest.raises(SystemExit):
        loadgen.main(["stream", "--url", url, "--body-file", str(body), "--events", "gemini"])


# --- targets and bodies ---------------------------------------------------------------------------


def _server(name: str, port: int) -> Server:
    server = Server(name, ["true"], {}, Path(os.devnull))
    server.base_url = f"http://127.0.0.1:{port}"
    return server


def test_openai_bodies_pass_through_unchanged_when_streamed():
    plain = json.loads(openai_request_body(stream=False))
    stream = json.loads(openai_request_body(stream=True))
    translated = json.loads(openai_request_body(stream=True, model=TRANSLATED_MODEL))
    assert plain["model"] == "gpt-4o-mini" and "stream" not in plain
    assert stream["stream"] is True
    # Asking for the usage chunk itself, the client's body needs no rewrite by the gateway.
    assert stream["stream_options"] == {"include_usage": True}
    assert "[[fake delta_interval_ms=20]]" in stream["messages"][0]["content"]
    assert translated["model"] == TRANSLATED_MODEL


def test_openai_targets_cover_every_path_of_the_surface():
    fake, relay_server = _server("fake-openai", 1), _server("relay", 2)
    gateway = Target("gateway", "http://127.0.0.1:3/ak/K/v1/messages", [], server=_server("gw", 3))
    litellm = Target("litellm", "", [("x-api-key", "sk-master")], server=_server("litellm", 4))
    targets = {
        t.name: t
        for t in openai_targets(
            openai_fake=fake,
            relay=relay_server,
            gateway=gateway,
            access_key="K",
            litellm=litellm,
        )
    }
    assert set(targets) == {
        "openai-direct",
        "openai-relay",
        "openai-gateway",
        "openai-gateway-ak",
        "openai-translated",
        "openai-litellm",
    }
    assert targets["openai-direct"].server is None
    assert targets["openai-direct"].watched is fake
    assert targets["openai-relay"].messages_url == "http://127.0.0.1:2/v1/chat/completions"
    assert targets["openai-gateway"].messages_url == "http://127.0.0.1:3/v1/chat/completions"
    assert ("authorization", "Bearer K") in targets["openai-gateway"].headers
    assert targets["openai-gateway-ak"].messages_url == (
        "http://127.0.0.1:3/ak/K/v1/chat/completions"
    )
    assert ("authorization", "Bearer sk-master") in targets["openai-litellm"].headers
    assert targets["openai-translated"].body == "translated-plain"
    assert targets["openai-translated"].stream_body == "translated-stream"
    assert {t.events for t in targets.values()} == {OPENAI}
    servers = {name: target.server for name, target in targets.items()}
    assert servers["openai-relay"] is relay_server
    assert servers["openai-litellm"] is litellm.server
    for name in ("openai-gateway", "openai-gateway-ak", "openai-translated"):
        assert servers[name] is gateway.server  # one gateway serves every form
    only_direct = openai_targets(
        openai_fake=fake, relay=None, gateway=None, access_key="K", litellm=None
    )
    assert [t.name for t in only_direct] == ["openai-direct"]
    assert relay_target(relay_server).messages_url == "http://127.0.0.1:2/v1/messages"


def _state(pid: int) -> str:
    """The process's state letter, once it settles (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + 5
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("S", "T") or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def test_only_running_pauses_each_other_server_once_and_never_the_active_one(tmp_path):
    from bench.proxy_bench import only_running

    shared = Server("shared", ["sleep", "30"], dict(os.environ), tmp_path / "a.log").start()
    other = Server("other", ["sleep", "30"], dict(os.environ), tmp_path / "b.log").start()
    try:
        first = Target("gateway", "", [], server=shared)
        second = Target("openai-gateway", "", [], server=shared)
        third = Target("litellm", "", [], server=other)
        direct = Target("direct", "", [])
        with only_running(second, [first, second, third, direct, third]):
            assert _state(shared.pid) != "T"
            assert _state(other.pid) == "T"
        assert _state(other.pid) != "T"
    finally:
        shared.stop()
        other.stop()


# --- report: the floor and the OpenAI table ------------------------------------------------------


def _run(cpu: dict[str, float], rps: dict[str, float] | None = None) -> dict:
    rps = rps or {}
    medians = {
        name: {
            "wrk_c64": {
                "cpu_ms_per_request": value,
                "rps": rps.get(name, 100.0),
                "errors": 0,
                "requests": 100,
            }
        }
        for name, value in cpu.items()
    }
    return {"plan": {"concurrencies": [64]}, "medians": medians, "repetitions": [medians]}


def test_floor_ratio_is_checked_on_both_surfaces():
    results = _run(
        {
            "relay": 0.1,
            "gateway": 0.25,
            "openai-relay": 0.2,
            "openai-gateway": 0.8,
            "openai-translated": 1.2,
        }
    )
    assert report.cpu_ratio(results["medians"], "gateway", "relay") == 2.5
    assert report.cpu_ratio(results["medians"], "gateway", "missing") is None
    checks = {row["target"]: row for row in report.targets_check(results)}
    anthropic = checks["gateway CPU per request ÷ relay floor, c=64 (Anthropic)"]
    openai = checks["gateway CPU per request ÷ relay floor, c=64 (OpenAI)"]
    assert (anthropic["measured"], anthropic["met"]) == (2.5, True)
    assert (openai["measured"], openai["met"]) == (4.0, False)
    text = report.markdown(results, json_name="run.json")
    assert "## OpenAI surface" in text
    assert "| OpenAI | openai-translated | 1.200 | 6.00 |" in text
    assert "| Anthropic | gateway | 0.250 | 2.50 |" in text


def test_openai_table_has_a_column_per_target_and_its_ratios():
    results = _run(
        {"openai-direct": 0.1, "openai-relay": 0.2, "openai-gateway": 1.0, "openai-litellm": 5.0}
    )
    text = report.markdown(results, json_name="run.json")
    header = next(
        line
        for line in text.splitlines()
        if line.startswith("| metric | direct | relay | gateway /v1/")
    )
    assert "LiteLLM ÷ gateway /v1/" in header
    row = next(
        line
        for line in text.splitlines()
        if line.startswith("| c=64 server CPU ms/request") and "5.00" in line
    )
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # direct, relay, /v1/, /ak/, translated, LiteLLM, then the four ratios.
    assert cells[1:] == ["0.10", "0.20", "1.00", "–", "–", "5.00", "10.00", "5.00", "–", "5.00"]
    quiet = report.markdown(_run({"direct": 0.1, "gateway": 1.0}), json_name="run.json")
    assert "## OpenAI surface" not in quiet


def test_openai_results_are_upstream_bound_against_the_fake_openai():
    results = _run(
        {"openai-direct": 0.1, "openai-relay": 0.1, "openai-gateway": 1.0},
        rps={"openai-direct": 1000.0, "openai-relay": 950.0, "openai-gateway": 100.0},
    )
    results["fake_ceiling"] = {"c64": {"rps": 10_000.0}}
    text = report.markdown(results, json_name="run.json")
    assert "openai-relay wrk_c64" in text
    assert "openai-gateway wrk_c64" not in text


def test_translation_micro_numbers_are_reported():
    results = _run({"relay": 0.1, "gateway": 0.2})
    results["translation_micro"] = {
        "json": "orjson",
        "request_bytes": 9831,
        "stream_events": 200,
        "passthrough_us": 240.0,
        "translated_us": 650.0,
        "added_us": 410.0,
        "target_added_us": 300,
    }
    assert "**410 µs added** (target ≤ 300 µs)" in report.markdown(results, json_name="r.json")


# --- profile groups -------------------------------------------------------------------------------


def test_profile_groups_by_where_the_time_went():
    def stack(*frames: str) -> list[str]:
        return ["main (uvicorn/main.py:1)", *frames]

    assert profile.group_of(stack("is_idle (httpcore/_async/http11.py:5)")) == (profile.HTTP_CLIENT)
    # A context manager's exit counts for the library that used it.
    assert (
        profile.group_of(stack("send (httpx/_client.py:9)", "__exit__ (contextlib.py:144)"))
        == profile.HTTP_CLIENT
    )
    assert profile.group_of(stack("handle (django/core/handlers/asgi.py:1)")) == (
        "Django/ninja dispatch"
    )
    assert profile.group_of(stack("decode (json/decoder.py:3)")) == "JSON"
    assert profile.group_of(stack("run_plan (proxy/services.py:9)")) == profile.OURS
    # Anything under the usage writer is usage recording, down to the database driver.
    assert (
        profile.group_of(
            [
                "_bootstrap (threading.py:1)",
                "_collect (usage/recording.py:5)",
                "dump (psycopg/x.py:1)",
            ]
        )
        == profile.USAGE
    )
    # ...but not the ASGI wrapper every request runs under.
    wrapped = ["application (usage/lifespan.py:82)", "handle (django/core/handlers/asgi.py:1)"]
    assert profile.group_of(wrapped) == "Django/ninja dispatch"
    assert profile.group_of(stack("mystery (somewhere/else.py:1)")) == profile.OTHER
    raw = "\n".join(
        [
            "main (uvicorn/main.py:1);send (httpx/_client.py:5) 6",
            "main (uvicorn/main.py:1);record (usage/recording.py:3) 2",
            "main (uvicorn/main.py:1);select (selectors.py:469) 50",
        ]
    )
    summary = profile.summarise(raw)
    groups = {row["group"]: row for row in summary["groups"]}
    assert groups[profile.HTTP_CLIENT]["share"] == 0.75
    assert groups[profile.USAGE]["top_self"] == ["record (usage/recording.py)"]
    assert f"| {profile.HTTP_CLIENT} | 75.0 | – |" in profile.as_markdown(summary)
    summary["wrk_cpu_ms_per_request_while_profiled"] = 4.0
    assert f"| {profile.HTTP_CLIENT} | 75.0 | 3.00 |" in profile.as_markdown(summary)
    assert profile.group_of(stack("_request (aiohttp/client.py:1)")) == profile.HTTP_CLIENT
    assert profile.group_of(stack("text (requestlog/redaction.py:1)")) == profile.OURS


# --- gateway set-up -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_gateway_setup_stores_every_credential_for_the_key(capsys):
    from accounts.models import AccessKey, ProviderCredential

    gateway_setup.main(
        [
            "--bedrock-endpoint",
            "http://127.0.0.1:8999",
            "--openai-endpoint",
            "http://127.0.0.1:8998",
        ]
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    key = AccessKey.objects.get(pk=printed["key_id"])
    credentials = {c.provider: c for c in ProviderCredential.objects.filter(access_key=key)}
    assert set(credentials) == {"bedrock", "anthropic", "openai"}
    assert credentials["openai"].endpoint_url == "http://127.0.0.1:8998"
    assert credentials["bedrock"].endpoint_url == "http://127.0.0.1:8999"
    assert printed["access_key"]


@pytest.mark.django_db(transaction=True)
def test_gateway_setup_without_openai_stores_no_openai_credential(capsys):
    from accounts.models import ProviderCredential

    gateway_setup.main(["--bedrock-endpoint", "http://127.0.0.1:8999"])
    key_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["key_id"]
    providers = set(
        ProviderCredential.objects.filter(access_key_id=key_id).values_list("provider", flat=True)
    )
    assert providers == {"bedrock", "anthropic"}
