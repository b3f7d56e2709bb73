"""Tests of the proxy benchmark's parts: the load generator against a real local fake, wrk's
script and output, the medians and targets of the report, the profile summary.

They run in the suite (``./gateway test bench/proxy/tests -q``). Nothing here asserts on
timing.
"""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from bench import loadgen
from bench.proxy import profile, report, wrk
from bench.proxy.fake import BenchFakeUpstream
from proxy.testing.faults import HttpError

BODY = json.dumps(
    {"model": "claude-x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
).encode()
STREAM_BODY = json.dumps(
    {
        "model": "claude-x",
        "max_tokens": 16,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()
HEADERS = [("content-type", "application/json"), ("x-api-key", "k")]


@pytest.fixture
def fake():
    with BenchFakeUpstream(text_deltas=5) as server:
        yield server


def _raw(fake: BenchFakeUpstream, body: bytes, headers=HEADERS) -> tuple[loadgen.Target, bytes]:
    target = loadgen.Target.from_url(f"{fake.base_url}/v1/messages")
    return target, loadgen.build_request(target, body, headers)


# --- load generator ------------------------------------------------------------------------------


async def test_latency_counts_every_answer(fake):
    target, raw = _raw(fake, BODY)
    result = await loadgen.measure_latency(target, raw, requests=30, warmup=5)
    assert result["ok"] == 30
    assert result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


async def test_latency_counts_upstream_errors(fake):
    fake.set_default_fault("anthropic", HttpError(status=500))
    target, raw = _raw(fake, BODY)
    result = await loadgen.measure_latency(target, raw, requests=10, warmup=0)
    assert result["ok"] == 0
    assert result["errors"] == 10
    assert math.isnan(result["p50_ms"])


async def test_latency_survives_a_refused_connection():
    target = loadgen.Target("127.0.0.1", 9, "/")  # discard port: nothing listens there
    raw = loadgen.build_request(target, BODY, HEADERS)
    result = await loadgen.measure_latency(target, raw, requests=3, warmup=0)
    assert result["errors"] == 3


async def test_streams_time_every_delta(fake):
    target, raw = _raw(fake, STREAM_BODY)
    result = await loadgen.measure_streams(
        target, raw, concurrency=3, streams=6, warmup=0, expect_deltas=5
    )
    assert result["ok"] == 6
    assert result["errors"] == 0
    assert result["gaps"] == 6 * 4  # 5 deltas per stream, 4 gaps between them
    assert result["ttfb_p50_ms"] <= result["total_p50_ms"]


async def test_staggered_workers_start_apart(fake, monkeypatch):
    starts: list[float] = []
    send = loadgen.Connection.send

    async def recording(self, raw):
        starts.append(time.monotonic())
        return await send(self, raw)

    monkeypatch.setattr(loadgen.Connection, "send", recording)
    # Streams of 5 deltas 40 ms apart outlast the stagger: each worker takes one stream.
    paced = STREAM_BODY.replace(
        b'"content": "hi"', b'"content": "hi [[fake delta_interval_ms=40]]"'
    )
    assert paced != STREAM_BODY
    target, raw = _raw(fake, paced)
    result = await loadgen.measure_streams(
        target, raw, concurrency=3, streams=3, warmup=0, expect_deltas=5, stagger_ms=50
    )
    assert result["ok"] == 3 and result["stagger_ms"] == 50
    first, second, third = sorted(starts)
    # Lower bounds only (a sleep lasts at least its time): worker k starts k × 50 ms later.
    assert second - first >= 0.045 and third - first >= 0.095


async def test_streams_with_missing_deltas_are_errors(fake):
    target, raw = _raw(fake, STREAM_BODY)
    result = await loadgen.measure_streams(
        target, raw, concurrency=1, streams=2, warmup=0, expect_deltas=64
    )
    assert result["ok"] == 0
    assert result["errors"] == 2
    assert result["gap_p99_ms"] is None


def test_sse_clock_handles_events_split_across_reads():
    times: list[float] = []
    clock = loadgen.SSEClock(0.0, times)
    clock.feed(b"event: content_block_delta\ndata: {}\n", 1.0)
    clock.feed(b"\nevent: ping\ndata: {}\n\nevent: content_block_", 2.0)
    clock.feed(b"delta\ndata: {}\n\n", 3.0)
    assert times == [2.0, 3.0]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 99.5) == 100
    assert loadgen.percentile([1.0, 2.0], 50) == 1.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert math.isnan(loadgen.percentile([], 50))


def test_target_rejects_https():
    with pytest.raises(ValueError, match="http://"):
        loadgen.Target.from_url("https://127.0.0.1/v1/messages")
    assert loadgen.Target.from_url("http://127.0.0.1:81/a?b=1").path == "/a?b=1"


def test_cli_rejects_bad_counts(tmp_path):
    body = tmp_path / "body.json"
    body.write_bytes(BODY)
    with pytest.raises(SystemExit):
        loadgen.main(["latency", "--url", "http://127.0.0.1:1/", "--body-file", str(body),
                      "--requests", "0"])  # fmt: skip
    with pytest.raises(SystemExit):
        loadgen.main(["latency", "--url", "http://127.0.0.1:1/", "--body-file", str(body),
                      "--header", "no-colon"])  # fmt: skip


# --- the benchmark's fake ------------------------------------------------------------------------


def test_fake_answers_the_requested_status_only_when_asked(fake):
    with httpx.Client(base_url=fake.base_url) as client:
        forced = client.post(
            "/v1/messages", content=BODY, headers={"x-bench-anthropic-status": "529"}
        )
        normal = client.post("/v1/messages", content=BODY)
        bedrock = client.post(
            "/model/m/converse",
            json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            headers={"x-bench-anthropic-status": "529"},
        )
    assert forced.status_code == 529
    assert forced.json()["error"]["type"] == "overloaded_error"
    assert normal.status_code == 200
    assert bedrock.status_code == 200  # the header only concerns the Anthropic side


# --- wrk ------------------------------------------------------------------------------------------


def test_lua_strings_cannot_be_closed_by_their_content():
    script = wrk.lua_script(b'{"a":"]]","b":"]=]"}', [("x-h", "v")])
    assert 'wrk.body = [==[{"a":"]]","b":"]=]"}]==]' in script
    assert "wrk.headers[ [=[x-h]=] ] = [=[v]=]" in script
    assert "function done(" in script


def test_wrk_output_is_read_from_the_result_line():
    line = wrk.RESULT_PREFIX + json.dumps(
        {
            "requests": 1000,
            "duration_us": 2_000_000,
            "connect_errors": 0,
            "read_errors": 1,
            "write_errors": 0,
            "timeouts": 2,
            "non_2xx": 3,
            "p50_us": 1500,
            "p90_us": 2500,
            "p99_us": 9000,
            "max_us": 12000,
            "mean_us": 1600.5,
        }
    )
    result = wrk.parse_output("Running 2s test\n" + line + "\n", 64)
    assert result.rps == 500.0
    assert result.errors == 6
    assert result.as_dict()["error_rate"] == 0.006
    assert (result.p50_ms, result.p99_ms) == (1.5, 9.0)
    with pytest.raises(RuntimeError, match="no result line"):
        wrk.parse_output("Running 2s test\n", 64)


# --- report ------------------------------------------------------------------------------------


def test_medians_of_nested_runs():
    runs = [
        {"a": {"p50": 1.0, "n": 3}, "name": "x", "gap": float("nan"), "only_first": 1},
        {"a": {"p50": 3.0, "n": 5}, "name": "y", "gap": 2.0},
        {"a": {"p50": 2.0, "n": 4}, "name": "z", "gap": 4.0},
    ]
    merged = report.median_of(runs)
    assert merged["a"] == {"p50": 2.0, "n": 4}
    assert merged["name"] == "x"
    assert merged["gap"] == 3.0
    assert merged["only_first"] == 1


def _results(gateway_p50: float, gateway_rps: float, growth: float) -> dict:
    stream = {"ttfb_p50_ms": 1.0, "gap_p99_ms": 21.0, "errors": 0, "streams": 2}
    direct = {
        "latency_c1": {"p50_ms": 0.2, "p99_ms": 1.0, "errors": 0, "requests": 10},
        "wrk_c64": {"rps": 5000.0, "errors": 0, "requests": 100},
        "stream_c1": stream,
        "stream_c32": stream,
        "stream_burst32": stream,
    }
    gateway = {
        "latency_c1": {"p50_ms": gateway_p50, "p99_ms": 4.0, "errors": 0, "requests": 10},
        "wrk_c64": {"rps": gateway_rps, "errors": 1, "requests": 100},
        "stream_c1": {**stream, "ttfb_p50_ms": 2.5},
        "stream_c32": stream,
        "stream_burst32": {**stream, "ttfb_p50_ms": 61.0},
        "fallback_stream_c1": {**stream, "ttfb_p50_ms": 3.5},
    }
    litellm = {"wrk_c64": {"rps": 50.0, "errors": 0, "requests": 100}}
    medians = {"direct": direct, "gateway": gateway, "litellm": litellm}
    return {
        "plan": {"concurrencies": [64], "repetitions": 1},
        "medians": medians,
        "repetitions": [medians],
        "fake_ceiling": {"c64": {"rps": 5000.0}},
        "workers": {"one_rps": 500.0, "two_rps": 900.0, "ratio": 1.8},
        "memory": {
            "gateway": {
                "idle_mib": 100.0,
                "soak": {
                    "requests": 1000,
                    "errors": 0,
                    "rss_before_mib": 100.0,
                    "rss_after_mib": 100.0 + growth,
                    "growth_pct": growth,
                },
            }
        },
    }


def test_targets_are_checked_against_direct_and_litellm():
    checks = {row["target"]: row for row in report.targets_check(_results(0.9, 600.0, 4.0))}
    anthropic = "requests/s at c=64, gateway ÷ LiteLLM (Anthropic)"
    assert checks["added latency c=1 p50"]["measured"] == 0.7
    assert checks["added latency c=1 p50"]["met"] is True
    assert checks[anthropic]["measured"] == 12.0
    assert checks[anthropic]["met"] is True
    assert checks["requests/s at c=64, gateway ÷ LiteLLM (OpenAI /v1/)"]["measured"] is None
    assert checks["stream added TTFB c=1 (p50)"]["met"] is True  # 1.5 ms added
    burst = checks["stream added TTFB, burst of 32 simultaneous starts (p50)"]
    assert (burst["measured"], burst["met"]) == (60.0, False)
    fallback = next(row for row in checks.values() if row["target"].startswith("fallback"))
    assert (fallback["measured"], fallback["met"]) == (2.5, True)  # against direct stream_c1
    assert checks["two workers ÷ one worker, requests/s at c=64"]["met"] is True
    assert checks["worker RSS idle"]["met"] is True
    growth = next(row for row in checks.values() if row["target"].startswith("RSS growth"))
    assert growth["met"] is True
    failed = {row["target"]: row for row in report.targets_check(_results(2.0, 400.0, 6.0))}
    assert failed["added latency c=1 p50"]["met"] is False
    assert failed[anthropic]["met"] is False
    assert next(row for row in failed.values() if row["target"].startswith("RSS"))["met"] is False


def test_markdown_flags_upstream_bound_results_and_counts_errors():
    results = _results(1.0, 4800.0, 1.0)
    text = report.markdown(results, json_name="run.json")
    assert "gateway wrk_c64" in text  # 4,800 is within 10% of the fake's 5,000
    assert report.error_rates(results)["gateway"] == pytest.approx(
        1 / 118
    )  # 10 + 100 + 4 × 2 streams
    quiet = report.markdown(_results(1.0, 100.0, 1.0), json_name="run.json")
    assert "none is upstream-bound" in quiet


# --- profile -------------------------------------------------------------------------------------


def test_profile_summary_counts_self_inclusive_and_project_frames():
    raw = "\n".join(
        [
            "main (uvicorn:8);messages (proxy/api.py:10);send (httpx/_client.py:5) 6",
            "main (uvicorn:8);messages (proxy/api.py:10) 2",
            "main (uvicorn:8);select (selectors.py:469) 50",
            "not a stack line",
        ]
    )
    summary = profile.summarise(raw)
    assert summary["samples"] == 58
    assert summary["busy_samples"] == 8
    assert summary["self"][0] == {
        "function": "send (httpx/_client.py)",
        "samples": 6,
        "share": 0.75,
    }
    projects = {row["function"]: row["samples"] for row in summary["project_inclusive"]}
    assert projects == {"messages (proxy/api.py)": 8}
    assert "| `send (httpx/_client.py)` | 75.0 |" in profile.as_markdown(summary)
