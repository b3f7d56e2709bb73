"""What routing rules, a key pool, budgets and rate limits add per request, in one run.

    .venv/bin/python -m bench.governance_bench [--repetitions 3] [--seconds 8]

One gateway worker (uvicorn, PostgreSQL + Redis, usage recording on, production settings) in
front of the fake OpenAI server, on the OpenAI surface (``/v1/chat/completions``, model
``gpt-4o-mini``). Two scenarios, alternated and each on a fresh worker per repetition:

- ``off``: no rule, one OpenAI key, no budget, no limit;
- ``on``: 50 routing rules (the request matches only the last), a weighted pool of 5 OpenAI
  keys, two budgets and two sets of rate limits (``bench.proxy.governance_setup``).

Per scenario: concurrency-1 latency (``bench.loadgen``), wrk at concurrency 64 with the worker's
CPU time per request, and the Redis round trips per request (MONITOR, this database only,
commands run inside scripts not counted) over 50 sequential requests (an idle worker) and over
two seconds of wrk at concurrency 64 (a busy one). The fake and the load
generator share one core, the worker has the other. Results:
``bench/results/governance-<timestamp>.json`` and a table on stdout; the figures to quote are the
ratios and differences between the two scenarios of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proxy.processes import MAIN_PYTHON, REPO, Server, pinned, start_openai_fake
from bench.proxy.targets import (
    OPENAI_HEADERS,
    cpu_seconds,
    debug_off,
    gateway_env,
    openai_request_body,
    prepare_gateway,
    start_gateway,
)
from bench.proxy.wrk import lua_script, run_wrk

RESULTS = REPO / "bench" / "results"
LOADGEN_CORE = 0
SERVER_CORE = 1
PATH = "/v1/chat/completions"


def say(message: str) -> None:
    sys.stderr.write(f"[governance bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class RedisCommands:
    """Counts the commands the gateway sends Redis while the block runs, from MONITOR: only
    this database's, and not those a script runs inside Redis (one EVALSHA is one round trip,
    whatever its script does). Other clients of the server do not count."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.database = int(redis.connection.parse_url(redis_url).get("db", 0))
        self.client = redis.Redis.from_url(redis_url)
        self.seen: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.ready = threading.Event()

    def _watch(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                if self.done.is_set():
                    return
                self.seen.append(command)

    def __enter__(self) -> RedisCommands:
        self.watcher.start()
        self.ready.wait(5)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # settlements are sent after the answer
        self.done.set()
        self.client.ping()  # wakes the monitor so it sees ``done``
        self.watcher.join(5)

    @property
    def count(self) -> int:
        return sum(
            1
            for command in self.seen
            if int(command.get("db", -1)) == self.database and command.get("client_type") != "lua"
        )


def redis_round_trips(redis_url: str, url: str, key: str, body: bytes, requests: int) -> float:
    """Round trips to Redis per request over ``requests`` sequential requests (an idle worker:
    each request's settlement goes alone after its answer)."""
    import httpx

    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with RedisCommands(redis_url) as commands, httpx.Client(timeout=30) as http:
        for _ in range(requests):
            http.post(url, content=body, headers=headers)
    return round(commands.count / requests, 2)


def redis_round_trips_under_load(redis_url: str, url: str, script: Path) -> float:
    """Round trips to Redis per request with wrk at concurrency 64 for two seconds (a busy
    worker: settlements travel with the next admissions)."""
    with RedisCommands(redis_url) as commands:
        result = run_wrk(url=url, script_path=script, concurrency=64, seconds=2, core=LOADGEN_CORE)
    return round(commands.count / max(result.requests, 1), 2)


def _governance(scenario: str, env: dict[str, str], access_key: str, openai_url: str) -> None:
    """``off``, ``on`` (everything), or parts joined by ``+`` (``rules``, ``pool+limits``)."""
    state = "off" if scenario == "off" else "on"
    parts = [] if scenario in ("off", "on") else ["--parts", scenario.replace("+", ",")]
    subprocess.run(  # noqa: S603 - fixed commands built here
        [
            str(MAIN_PYTHON),
            "-m",
            "bench.proxy.governance_setup",
            state,
            "--access-key",
            access_key,
            "--openai-endpoint",
            openai_url,
            *parts,
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _latency(url: str, body: Path, headers: list[tuple[str, str]], requests: int) -> dict:
    command = [
        str(MAIN_PYTHON),
        "-m",
        "bench.loadgen",
        "latency",
        "--url",
        url,
        "--body-file",
        str(body),
        "--requests",
        str(requests),
        "--warmup",
        "50",
    ]
    for name, value in headers:
        command += ["--header", f"{name}:{value}"]
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        pinned(command, LOADGEN_CORE),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(finished.stdout.strip().splitlines()[-1]))


def measure(
    *,
    name: str,
    env: dict[str, str],
    access_key: str,
    work: Path,
    body: Path,
    script: Path,
    redis_url: str,
    seconds: float,
    latency_requests: int,
) -> dict[str, Any]:
    gateway = start_gateway(
        name=f"gateway-{name}", env=env, access_key=access_key, log_dir=work, core=SERVER_CORE
    )
    server = gateway.server
    assert server is not None
    url = server.base_url + PATH
    headers = [("authorization", f"Bearer {access_key}"), *OPENAI_HEADERS]
    try:
        latency = _latency(url, body, headers, latency_requests)
        run_wrk(url=url, script_path=script, concurrency=64, seconds=2, core=LOADGEN_CORE)
        cpu_before = cpu_seconds(server.pid)
        result = run_wrk(
            url=url, script_path=script, concurrency=64, seconds=seconds, core=LOADGEN_CORE
        )
        cpu = cpu_seconds(server.pid) - cpu_before
        round_trips = redis_round_trips(redis_url, url, access_key, body.read_bytes(), 50)
        round_trips_c64 = redis_round_trips_under_load(redis_url, url, script)
    finally:
        server.stop()
    wrk = result.as_dict()
    requests = max(result.requests, 1)
    return {
        "latency_c1": latency,
        "wrk_c64": wrk,
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3),
        "redis_round_trips_per_request": round_trips,
        "redis_round_trips_per_request_c64": round_trips_c64,
    }


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for part in path:
            value = value[part]
        values.append(float(value))
    return round(statistics.median(values), 3)


def summary(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for scenario, runs in results.items():
        table[scenario] = {
            "rps_c64": _median(runs, "wrk_c64", "rps"),
            "cpu_ms_per_request": _median(runs, "cpu_ms_per_request"),
            "p50_ms_c1": _median(runs, "latency_c1", "p50_ms"),
            "p99_ms_c1": _median(runs, "latency_c1", "p99_ms"),
            "redis_round_trips_per_request": _median(runs, "redis_round_trips_per_request"),
            "redis_round_trips_per_request_c64": _median(runs, "redis_round_trips_per_request_c64"),
        }
    off = table["off"]
    for scenario in list(results):
        if scenario == "off":
            continue
        on = table[scenario]
        table[f"{scenario}_vs_off"] = {
            "rps_ratio": round(on["rps_c64"] / off["rps_c64"], 3) if off["rps_c64"] else None,
            "cpu_ms_added": round(on["cpu_ms_per_request"] - off["cpu_ms_per_request"], 3),
            "p50_ms_added": round(on["p50_ms_c1"] - off["p50_ms_c1"], 3),
            "redis_round_trips_added": round(
                on["redis_round_trips_per_request"] - off["redis_round_trips_per_request"], 2
            ),
            "redis_round_trips_added_c64": round(
                on["redis_round_trips_per_request_c64"] - off["redis_round_trips_per_request_c64"],
                2,
            ),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.governance_bench", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument(
        "--scenarios",
        default="off,on",
        help="comma-separated: off, on, or parts joined by + (rules, pool, budgets, limits)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gw_h9"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
    )
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / "tmp" / f"governance-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="gw-governance-bench-"))
    fake: Server | None = None
    try:
        fake = start_openai_fake(
            log_dir=work, core=LOADGEN_CORE, text_deltas=8, env=dict(os.environ)
        )
        body = work / "body.json"
        body.write_bytes(openai_request_body(stream=False))
        env = gateway_env(
            fake_url=fake.base_url,
            data_dir=data_dir,
            database_url=args.database_url,
            redis_url=args.redis_url,
            openai_url=fake.base_url,
        )
        say("preparing the gateway (migrate, key, credentials)")
        access_key = prepare_gateway(
            env, fake_url=fake.base_url, log=work / "setup.log", openai_url=fake.base_url
        )
        env = debug_off(env, data_dir)
        script = work / "request.lua"
        headers = [("authorization", f"Bearer {access_key}"), *OPENAI_HEADERS]
        script.write_text(lua_script(body.read_bytes(), headers))
        scenarios = [name for name in args.scenarios.split(",") if name]
        if "off" not in scenarios:
            scenarios.insert(0, "off")
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        for repetition in range(args.repetitions):
            for scenario in scenarios:
                say(f"repetition {repetition + 1}: governance {scenario}")
                _governance(scenario, env, access_key, fake.base_url)
                results[scenario].append(
                    measure(
                        name=f"{scenario}-{repetition}",
                        env=env,
                        access_key=access_key,
                        work=work,
                        body=body,
                        script=script,
                        redis_url=args.redis_url,
                        seconds=args.seconds,
                        latency_requests=args.latency_requests,
                    )
                )
        _governance("off", env, access_key, fake.base_url)
    finally:
        if fake is not None:
            fake.stop()
    output = {
        "started_at": stamp,
        "repetitions": args.repetitions,
        "seconds": args.seconds,
        "runs": results,
        "summary": summary(results),
    }
    path = RESULTS / f"governance-{stamp}.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    sys.stdout.write(json.dumps(output["summary"], indent=2) + "\n")
    say(f"written {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
