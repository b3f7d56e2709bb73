"""The proxy benchmark: the fake upstreams called directly, through the relay floor, through the
gateway, through LiteLLM, on both client surfaces (Anthropic Messages and OpenAI chat).

Run it with ``bench/run`` (installs wrk, LiteLLM and the bench tools first) or, once those are
in place, ``.venv/bin/python -m bench.proxy_bench [--quick]``. See bench/README.md for what is
measured and how to read it. Every server listens on 127.0.0.1 only; every load is bounded by a
request count or a duration.

Layout of one run:

1. the fakes (``bench.proxy.fake``: Anthropic + Bedrock; ``proxy.testing.fake_openai``) on the
   load generator's core; the Anthropic fake's own ceiling with wrk;
2. the relay floor (``bench.proxy.relay``), the gateway (one uvicorn worker, PostgreSQL + Redis,
   usage recording on) and LiteLLM's proxy (one worker) on the other core; only the server being
   measured runs, the others are paused with SIGSTOP so an idle process steals nothing;
3. per repetition and target: concurrency-1 latency (``bench.loadgen``), wrk at 16/64/256 with
   the server's CPU time per request and its memory, streams at concurrency 1 and 32, and for
   the gateway the fallback stream (Anthropic 529, Bedrock Converse) against the fake's
   converse-stream called directly. Targets: direct, relay, gateway, LiteLLM on the Anthropic
   surface; the same on the OpenAI surface (the gateway in both its forms, bearer ``/v1/`` and
   ``/ak/<key>/v1/``), and the translation (an OpenAI client asking for a Claude model);
4. the memory soak (the gateway after N more requests), py-spy profiles of the gateway worker
   (Anthropic and OpenAI passthrough), the translation micro-benchmark, the stack choices (ASGI
   server, HTTP transport, JSON library) and one gateway worker against two;
5. ``bench/results/<timestamp>.json`` and ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proxy import profile as profiler
from bench.proxy import report
from bench.proxy.processes import (
    MAIN_PYTHON,
    REPO,
    ProcessFailed,
    Server,
    cores,
    pinned,
    snapshot_source,
    start_openai_fake,
)
from bench.proxy.processes import start_fake as launch_fake
from bench.proxy.rounds import alternate, medians
from bench.proxy.targets import (
    LITELLM_BIN,
    TOOLS_BIN,
    TRANSLATED_MODEL,
    Target,
    cpu_seconds,
    debug_off,
    direct_target,
    fallback_headers,
    gateway_env,
    main_thread_cpu_seconds,
    openai_request_body,
    openai_targets,
    prepare_gateway,
    relay_target,
    request_body,
    start_gateway,
    start_litellm,
    start_relay,
)
from bench.proxy.wrk import lua_script, run_wrk

RESULTS = REPO / "bench" / "results"
LOADGEN_CORE = 0
SERVER_CORE = 1
TEXT_DELTAS = 64
# The fakes' streams pace their deltas 20 ms apart ("[[fake delta_interval_ms=20]]" in the
# stream bodies): a stream lasts TEXT_DELTAS × 20 ms, and 32 streams starting this far apart
# keep starting evenly.
STREAM_STAGGER_MS = TEXT_DELTAS * 20 / 32
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gw_h9"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
GATEWAY_PATHS = ("accounts", "proxy", "usage", "gateway_project", "governance", "requestlog")


@dataclass(frozen=True)
class Plan:
    repetitions: int = 3
    wrk_seconds: float = 10.0
    concurrencies: tuple[int, ...] = (16, 64, 256)
    latency_requests: int = 2000
    stream_c1: int = 15
    stream_c32: int = 96
    fallback_streams: int = 15
    soak_requests: int = 100_000
    soak_chunk_seconds: float = 15.0
    profile_seconds: int = 12
    json_seconds: float = 2.0
    transport_requests: int = 3000
    litellm: bool = True
    openai: bool = True  # the OpenAI surface and the translation
    relay: bool = True
    # A fresh gateway worker for each of its targets and profiles: its CPU per request grows
    # with the idle connections in httpcore's pool, which the previous target's c=256 run
    # leaves behind (up to 200, kept 60 s), so without it a target's figures would depend on
    # which target ran before it.
    fresh_gateway: bool = True
    choices: bool = True
    debug: bool = True  # DEBUG=true, as the benchmark was specified; False: production settings


FULL = Plan()
QUICK = Plan(
    repetitions=1,
    wrk_seconds=4.0,
    latency_requests=500,
    stream_c1=4,
    stream_c32=32,
    fallback_streams=4,
    soak_requests=20_000,
    soak_chunk_seconds=8.0,
    profile_seconds=6,
    json_seconds=0.5,
    transport_requests=1000,
)


def say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Context:
    plan: Plan
    work: Path
    fake: Server
    bodies: dict[str, Path] = field(default_factory=dict)
    openai_fake: Server | None = None
    source: Path = REPO  # the code the gateway runs (a snapshot taken at the start of the run)


def loadgen(
    context: Context, mode: str, url: str, body: str, headers: list[tuple[str, str]], **options: Any
) -> dict[str, Any]:
    """One run of bench.loadgen in its own process on the load generator's core."""
    command = [
        str(MAIN_PYTHON),
        "-m",
        "bench.loadgen",
        mode,
        "--url",
        url,
        "--body-file",
        str(context.bodies[body]),
    ]
    for name, value in headers:
        command += ["--header", f"{name}:{value}"]
    for name, value in options.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        pinned(command, LOADGEN_CORE),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"loadgen failed: {finished.stderr[-2000:]}")
    return dict(json.loads(finished.stdout.strip().splitlines()[-1]))


class MemorySampler:
    """Samples a process tree's RSS in the background; keeps the maximum."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from bench.proxy.processes import tree_rss_mib

        while not self._stop.is_set():
            self.max_mib = max(self.max_mib, tree_rss_mib(self.pid))
            self._stop.wait(0.25)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def target_pid(context: Context, target: Target) -> int:
    """The process whose CPU time and memory count for ``target``: its server, else the fake
    it calls directly."""
    if target.server is not None:
        return target.server.pid
    if target.watched is not None:
        return target.watched.pid
    return context.fake.pid


def throughput(context: Context, target: Target, concurrency: int, seconds: float) -> dict:
    """wrk at one concurrency, with the target's CPU time per request and peak memory."""
    script = context.work / f"{target.name}.lua"
    if not script.exists():
        script.write_text(lua_script(context.bodies[target.body].read_bytes(), target.headers))
    pid = target_pid(context, target)
    cpu_before = cpu_seconds(pid)
    main_before = main_thread_cpu_seconds(pid)
    with MemorySampler(pid) as memory:
        result = run_wrk(
            url=target.messages_url,
            script_path=script,
            concurrency=concurrency,
            seconds=seconds,
            core=LOADGEN_CORE,
        )
    cpu = cpu_seconds(pid) - cpu_before
    main = main_thread_cpu_seconds(pid) - main_before
    data = result.as_dict()
    data["cpu_ms_per_request"] = round(cpu * 1000 / result.requests, 3) if result.requests else None
    # The event loop's share: the rest is the server's other threads (the usage writer).
    data["main_thread_cpu_ms_per_request"] = (
        round(main * 1000 / result.requests, 3) if result.requests else None
    )
    data["rss_max_mib"] = memory.max_mib
    return data


def measure_target(context: Context, target: Target) -> dict[str, Any]:
    plan = context.plan
    say(f"  {target.name}: latency at concurrency 1")
    result: dict[str, Any] = {
        "latency_c1": loadgen(
            context,
            "latency",
            target.messages_url,
            target.body,
            target.headers,
            requests=plan.latency_requests,
            warmup=50,
        )
    }
    for concurrency in plan.concurrencies:
        say(f"  {target.name}: wrk at concurrency {concurrency}")
        result[f"wrk_c{concurrency}"] = throughput(context, target, concurrency, plan.wrk_seconds)
    for name, streams, concurrency, stagger_ms in (
        ("stream_c1", plan.stream_c1, 1, 0.0),
        # 32 at a time, starting STREAM_STAGGER_MS apart: a stream starts every 40 ms or so,
        # as in a team's steady traffic.
        ("stream_c32", plan.stream_c32, 32, STREAM_STAGGER_MS),
        # 32 starting at the same moment (after a warm-up stream each), every one in the burst
        # timed: the worst case of agents fanning out.
        ("stream_burst32", 32, 32, 0.0),
    ):
        say(f"  {target.name}: {streams} streams, {concurrency} at a time ({name})")
        result[name] = loadgen(
            context,
            "stream",
            target.messages_url,
            target.stream_body,
            target.headers,
            streams=streams,
            concurrency=concurrency,
            warmup=1,
            expect_deltas=TEXT_DELTAS,
            events=target.events,
            stagger_ms=stagger_ms or None,
        )
    if target.name == "gateway":
        say("  gateway: fallback streams (Anthropic 529, Bedrock InvokeModel stream)")
        result["fallback_stream_c1"] = loadgen(
            context,
            "stream",
            target.messages_url,
            "stream",
            fallback_headers(target.headers),
            streams=plan.fallback_streams,
            concurrency=1,
            warmup=2,
            expect_deltas=TEXT_DELTAS,
        )
    return result


@contextlib.contextmanager
def only_running(active: Target, others: list[Target]) -> Iterator[None]:
    """Pause every other proxy (SIGSTOP) while ``active`` is measured (a server that serves
    several targets, like the gateway, is paused once, and never when it serves ``active``)."""
    paused: list[Server] = []
    for other in others:
        server = other.server
        if server is None or server is active.server or any(server is p for p in paused):
            continue
        paused.append(server)
    for server in paused:
        os.killpg(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for server in paused:
            os.killpg(server.pid, signal.SIGCONT)


def warm(context: Context, target: Target, requests: int = 50) -> None:
    loadgen(
        context,
        "latency",
        target.messages_url,
        target.body,
        target.headers,
        requests=requests,
        warmup=0,
    )


def restart_gateway(context: Context, target: Target) -> None:
    """A fresh gateway worker (empty connection pool and caches), warmed on ``target``."""
    assert target.server is not None
    say(f"  {target.name}: fresh gateway worker")
    target.server.restart("/healthz")
    warm(context, target)


def idle_rss(context: Context, target: Target) -> float:
    warm(context, target)
    time.sleep(2)
    assert target.server is not None
    return target.server.rss_mib()


def soak(context: Context, target: Target) -> dict[str, Any]:
    """The gateway's memory before and after ``soak_requests`` more requests (wrk, c=64)."""
    assert target.server is not None
    plan = context.plan
    time.sleep(2)
    before = target.server.rss_mib()
    served = 0
    errors = 0
    trajectory = []
    while served < plan.soak_requests:
        run = throughput(context, target, 64, plan.soak_chunk_seconds)
        served += run["requests"]
        errors += run["errors"]
        trajectory.append({"requests": served, "rss_mib": target.server.rss_mib()})
        say(f"  soak: {served} requests, RSS {trajectory[-1]['rss_mib']} MiB")
        if run["requests"] == 0:
            break
    time.sleep(3)  # let the usage writer drain its queue
    after = target.server.rss_mib()
    return {
        "requests": served,
        "errors": errors,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "growth_pct": round((after - before) / before * 100, 2) if before else None,
        "trajectory": trajectory,
    }


def profile_gateway(context: Context, target: Target) -> dict[str, Any] | None:
    """py-spy (GIL samples) on the gateway worker during a wrk run at concurrency 64 of
    ``target`` (one of the gateway's surfaces)."""
    assert target.server is not None
    raw = context.work / f"{target.name}-profile.txt"
    outcome: dict[str, Any] = {}

    def load() -> None:
        outcome["wrk"] = throughput(context, target, 64, context.plan.profile_seconds + 4)

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(1)
    recorded = profiler.record(
        pid=target.server.pid, seconds=context.plan.profile_seconds, output=raw
    )
    loader.join()
    if recorded is None:
        return None
    summary = profiler.summarise(raw.read_text())
    summary["target"] = target.name
    summary["wrk_rps_while_profiled"] = outcome.get("wrk", {}).get("rps")
    summary["wrk_cpu_ms_per_request_while_profiled"] = outcome.get("wrk", {}).get(
        "cpu_ms_per_request"
    )
    summary["raw_path"] = str(raw.relative_to(REPO))
    return summary


def worker_scaling(context: Context, env: dict[str, str], access_key: str) -> dict[str, Any]:
    """One gateway worker against two (uvicorn ``--workers 2``) in alternating rounds
    (``bench.proxy.rounds``), medians over the plan's repetitions. Neither is pinned: the
    workers share the machine's cores with the fakes and wrk, as a gateway on one box does."""
    options: dict[str, Any] = {
        "env": env, "access_key": access_key, "log_dir": context.work, "core": None,
        "source": context.source,
    }  # fmt: skip
    one = start_gateway(name="gateway-1-worker", **options)
    two = start_gateway(name="gateway-2-workers", workers=2, **options)
    try:
        rounds = alternate(context, {one.name: one, two.name: two}, context.plan.repetitions)
    finally:
        for target in (one, two):
            assert target.server is not None
            target.server.stop()
    per_target = medians([one.name, two.name], rounds)
    one_rps = per_target[one.name]["c64_rps"]
    two_rps = per_target[two.name]["c64_rps"]
    ratio = round(two_rps / one_rps, 2) if one_rps and two_rps else None
    return {"rounds": rounds, "medians": per_target, "one_rps": one_rps, "two_rps": two_rps,
            "ratio": ratio}  # fmt: skip


# --- stack choices and experiments --------------------------------------------------------------


def tools_python(args: list[str], *, core: int | None, timeout: int = 900) -> dict[str, Any]:
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        pinned([str(TOOLS_BIN / "python"), *args], core),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {finished.stderr[-2000:]}")
    return dict(json.loads(finished.stdout.strip().splitlines()[-1]))


def quick_profile_of(context: Context, target: Target) -> dict[str, Any]:
    """The few figures that compare server stacks: c=1 latency, c=64 throughput, TTFB c=1."""
    warm(context, target)
    return {
        "latency_c1": loadgen(
            context,
            "latency",
            target.messages_url,
            target.body,
            target.headers,
            requests=context.plan.latency_requests,
            warmup=50,
        ),
        "wrk_c64": throughput(context, target, 64, context.plan.wrk_seconds),
        "stream_c1": loadgen(
            context,
            "stream",
            target.messages_url,
            target.stream_body,
            target.headers,
            streams=max(3, context.plan.stream_c1 // 2),
            concurrency=1,
            warmup=1,
            expect_deltas=TEXT_DELTAS,
        ),
        "rss_idle_mib": target.server.rss_mib() if target.server else None,
    }


def variant_runs(
    context: Context,
    variants: dict[str, dict[str, Any]],
    *,
    env: dict[str, str],
    access_key: str,
) -> dict[str, Any]:
    """Each gateway variant started alone, measured, stopped; repeated, medians kept."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for repetition in range(context.plan.repetitions):
        for name, options in variants.items():
            say(f"variant {name} (repetition {repetition + 1})")
            variant_env = {**env, **options.get("env", {})}
            try:
                target = start_gateway(
                    name=f"variant-{name}",
                    env=variant_env,
                    access_key=access_key,
                    log_dir=context.work,
                    core=SERVER_CORE,
                    server=options.get("server", "uvicorn"),
                    app=options.get("app", "gateway_project.asgi:application"),
                    python=options.get("python", str(MAIN_PYTHON)),
                    source=context.source,
                )
            except ProcessFailed as exc:
                say(f"variant {name} did not start: {exc}")
                runs[name].append({"error": str(exc)[-500:]})
                continue
            try:
                runs[name].append(quick_profile_of(context, target))
            finally:
                assert target.server is not None
                target.server.stop()
    return {name: report.median_of(results) for name, results in runs.items()}


def stack_choices(context: Context, env: dict[str, str], access_key: str) -> dict[str, Any]:
    plan = context.plan
    choices: dict[str, Any] = {}
    if not (TOOLS_BIN / "python").exists():
        return {"pending": "bench/.venv-tools is missing: run bench/run to install it"}
    say("choice: json vs orjson")
    choices["json"] = tools_python(
        ["-m", "bench.proxy.micro", "json", "--seconds", str(plan.json_seconds)], core=SERVER_CORE
    )
    say("choice: httpx default transport vs httpx-aiohttp")
    choices["transport"] = tools_python(
        [
            "-m",
            "bench.proxy.micro",
            "transport",
            "--url",
            f"{context.fake.base_url}/v1/messages",
            "--requests",
            str(plan.transport_requests),
        ],
        core=SERVER_CORE,
    )
    variants: dict[str, dict[str, Any]] = {"uvicorn": {}}
    if (TOOLS_BIN / "granian").exists():
        variants["granian"] = {"server": "granian"}
    choices["asgi_server"] = variant_runs(context, variants, env=env, access_key=access_key)
    return choices


# --- the run -----------------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        finished = subprocess.run(  # noqa: S603 - fixed commands built here
            [shutil.which("git") or "git", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return finished.stdout.strip()


def environment_facts() -> dict[str, Any]:
    def version(command: list[str]) -> str:
        try:
            finished = subprocess.run(  # noqa: S603 - fixed commands built here
                command, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"
        return (finished.stdout or finished.stderr).strip().splitlines()[0]

    return {
        "cores": cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
        "wrk": version(["wrk", "--version"]),
        "litellm": version(
            [
                str(LITELLM_BIN.parent / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ]
        )
        if LITELLM_BIN.exists()
        else "not installed",
        "pinning": "fake + load generator on core 0, target on core 1" if cores() >= 2 else "none",
        # The gateway measured is the work tree as it was at the start of the run (a copy of it
        # in bench/results/tmp/<run>/src: every gateway process of the run runs that code).
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "gateway_changes_not_committed": bool(_git("status", "--porcelain", "--", *GATEWAY_PATHS)),
    }


def write_bodies(context: Context) -> None:
    """Every request body of the run, written once (wrk and loadgen read them from files)."""
    for name, body in (
        ("plain", request_body(stream=False)),
        ("stream", request_body(stream=True)),
        ("openai-plain", openai_request_body(stream=False)),
        ("openai-stream", openai_request_body(stream=True)),
        ("translated-plain", openai_request_body(stream=False, model=TRANSLATED_MODEL)),
        ("translated-stream", openai_request_body(stream=True, model=TRANSLATED_MODEL)),
    ):
        path = context.work / f"{name}.json"
        path.write_bytes(body)
        context.bodies[name] = path


def translation_micro(plan: Plan, source: Path) -> dict[str, Any] | None:
    """``bench.proxy.translate_micro`` (CPU of translating one streamed chat request)."""
    number = "50" if plan.repetitions == 1 else "200"
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        pinned(
            [str(MAIN_PYTHON), "-m", "bench.proxy.translate_micro", "--number", number],
            SERVER_CORE,
        ),
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if finished.returncode != 0:
        say(f"translate_micro failed: {finished.stderr[-500:]}")
        return None
    return dict(json.loads(finished.stdout.strip().splitlines()[-1]))


def run(plan: Plan, *, database_url: str, redis_url: str, mode: str) -> Path:
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / "tmp" / stamp
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    fakes: list[Server] = []
    servers: list[Server] = []
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "mode": mode,
        "plan": asdict(plan),
        "environment": environment_facts(),
        "database_url": database_url,
        "redis_url": redis_url,
    }
    try:
        say("starting the fake upstreams")
        fake = launch_fake(
            log_dir=work, core=LOADGEN_CORE, text_deltas=TEXT_DELTAS, env=dict(os.environ)
        )
        fakes.append(fake)
        context = Context(plan=plan, work=work, fake=fake)
        say("taking a snapshot of the gateway's code")
        context.source = snapshot_source(work / "src")
        if plan.openai:
            context.openai_fake = start_openai_fake(
                log_dir=work, core=LOADGEN_CORE, text_deltas=TEXT_DELTAS, env=dict(os.environ)
            )
            fakes.append(context.openai_fake)
        openai_url = context.openai_fake.base_url if context.openai_fake else ""
        write_bodies(context)

        direct = direct_target(fake.base_url)
        say("the fake's own ceiling (wrk, direct)")
        results["fake_ceiling"] = {
            f"c{c}": throughput(context, direct, c, plan.wrk_seconds) for c in (64, 256)
        }
        say(f"  ceiling: {report.ceiling_rps(results['fake_ceiling'])} requests/s")

        say("preparing the gateway (migrate, key, Bedrock, Anthropic and OpenAI credentials)")
        env = gateway_env(
            fake_url=fake.base_url,
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            openai_url=openai_url,
        )
        access_key = prepare_gateway(
            env,
            fake_url=fake.base_url,
            log=work / "setup.log",
            openai_url=openai_url,
            source=context.source,
        )
        if not plan.debug:
            env = debug_off(env, data_dir)
        gateway = start_gateway(
            name="gateway",
            env=env,
            access_key=access_key,
            log_dir=work,
            core=SERVER_CORE,
            source=context.source,
        )
        assert gateway.server is not None
        servers.append(gateway.server)
        targets = [direct, gateway]
        memory: dict[str, Any] = {"gateway": {"idle_mib": idle_rss(context, gateway)}}
        relay = None
        if plan.relay:
            with only_running(gateway, targets):
                say("starting the relay floor")
                relay = start_relay(
                    fake_url=fake.base_url,
                    openai_url=openai_url or fake.base_url,
                    log_dir=work,
                    core=SERVER_CORE,
                )
            servers.append(relay)
            targets.insert(1, relay_target(relay))
            with only_running(targets[1], targets):
                memory["relay"] = {"idle_mib": idle_rss(context, targets[1])}
        litellm = None
        if plan.litellm and LITELLM_BIN.exists():
            with only_running(gateway, targets):
                say("starting LiteLLM")
                litellm = start_litellm(
                    fake_url=fake.base_url, log_dir=work, core=SERVER_CORE, openai_url=openai_url
                )
            assert litellm.server is not None
            servers.append(litellm.server)
            targets.append(litellm)
            with only_running(litellm, targets):
                memory["litellm"] = {"idle_mib": idle_rss(context, litellm)}
        elif plan.litellm:
            results["litellm_missing"] = "bench/.venv-litellm is missing: run bench/run"
        if context.openai_fake is not None:
            targets += openai_targets(
                openai_fake=context.openai_fake,
                relay=relay,
                gateway=gateway,
                access_key=access_key,
                litellm=litellm,
            )

        repetitions: list[dict[str, Any]] = []
        for repetition in range(plan.repetitions):
            say(f"repetition {repetition + 1} of {plan.repetitions}")
            order = targets[repetition % len(targets) :] + targets[: repetition % len(targets)]
            measured: dict[str, Any] = {}
            for target in order:
                with only_running(target, targets):
                    try:
                        if plan.fresh_gateway and target.server is gateway.server:
                            restart_gateway(context, target)
                        measured[target.name] = measure_target(context, target)
                    except RuntimeError as exc:  # one broken scenario must not lose the run
                        say(f"  {target.name} failed: {exc}")
                        measured[target.name] = {"failed": str(exc)[-1000:]}
            repetitions.append(measured)
        results["repetitions"] = repetitions
        results["medians"] = report.median_of(repetitions)

        with only_running(gateway, targets):
            say(f"memory soak: {plan.soak_requests} requests through the gateway")
            memory["gateway"]["soak"] = soak(context, gateway)
            say("profiling the gateway worker with py-spy (Anthropic passthrough, c=64)")
            if plan.fresh_gateway:
                restart_gateway(context, gateway)
            results["profile"] = profile_gateway(context, gateway)
            openai_gateway = next((t for t in targets if t.name == "openai-gateway"), None)
            if openai_gateway is not None:
                say("profiling the gateway worker with py-spy (OpenAI passthrough, c=64)")
                if plan.fresh_gateway:
                    restart_gateway(context, openai_gateway)
                results["profile_openai"] = profile_gateway(context, openai_gateway)
        results["memory"] = memory

        for server in servers:
            server.stop()
        servers = []
        say("one gateway worker against two (c=64, neither pinned)")
        results["workers"] = worker_scaling(context, env, access_key)
        if plan.openai:
            say("translation micro-benchmark")
            results["translation_micro"] = translation_micro(plan, context.source)
        if plan.choices:
            results["choices"] = stack_choices(context, env, access_key)
    finally:
        for server in reversed(fakes + servers):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    results["environment"]["load_average_end"] = list(os.getloadavg())
    results["finished_at"] = datetime.now(UTC).isoformat()
    output = RESULTS / f"{stamp}.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(report.markdown(results, json_name=output.name))
    say(f"wrote {output.relative_to(REPO)} and bench/results/latest.md")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repetition, fewer requests")
    parser.add_argument("--repetitions", type=int, help="override the number of repetitions")
    parser.add_argument("--soak-requests", type=int, help="override the soak's request count")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument(
        "--no-openai", action="store_true", help="skip the OpenAI surface and the translation"
    )
    parser.add_argument("--no-relay", action="store_true", help="skip the relay floor")
    parser.add_argument(
        "--keep-gateway",
        action="store_true",
        help="one gateway worker for every target (no restart before each gateway target)",
    )
    parser.add_argument("--no-choices", action="store_true", help="skip stack choices/experiments")
    parser.add_argument(
        "--debug-off", action="store_true", help="run the gateway with DEBUG off (production)"
    )
    parser.add_argument(
        "--log-levels",
        default=None,
        help="only measure what request logging costs: the gateway at each of these "
        "comma-separated GATEWAY_REQUEST_LOG_LEVEL values, the first being the baseline "
        "(e.g. off,full; see bench/proxy/log_levels.py)",
    )
    parser.add_argument(
        "--stream-start",
        action="store_true",
        help="only measure a stream's first byte at concurrency 1, direct, through the gateway "
        "and through its fallback, back to back and 1.3 s apart (see bench/proxy/stream_start.py)",
    )
    parser.add_argument(
        "--passthrough",
        action="store_true",
        help="only compare passthrough: Anthropic and OpenAI on the work tree's gateway, and "
        "Anthropic on the gateway at --baseline (see bench/proxy/passthrough.py)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="the commit --passthrough compares Anthropic passthrough with "
        "(default: the last one before the providers change; 'none' to skip)",
    )
    parser.add_argument("--wrk-seconds", type=float, help="override each wrk run's duration")
    parser.add_argument(
        "--latency-requests", type=int, help="override the concurrency-1 latency request count"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.repetitions is not None:
        plan = replace(plan, repetitions=max(1, args.repetitions))
    if args.soak_requests is not None:
        plan = replace(plan, soak_requests=max(1, args.soak_requests))
    if args.no_litellm:
        plan = replace(plan, litellm=False)
    if args.no_openai:
        plan = replace(plan, openai=False)
    if args.no_relay:
        plan = replace(plan, relay=False)
    if args.keep_gateway:
        plan = replace(plan, fresh_gateway=False)
    if args.no_choices:
        plan = replace(plan, choices=False)
    if args.debug_off:
        plan = replace(plan, debug=False)
    if args.wrk_seconds is not None:
        plan = replace(plan, wrk_seconds=max(1.0, args.wrk_seconds))
    if args.latency_requests is not None:
        plan = replace(plan, latency_requests=max(10, args.latency_requests))
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (bench/run installs it)")
    if args.log_levels is not None:
        from bench.proxy.log_levels import run_log_levels

        log_levels = [level.strip() for level in args.log_levels.split(",") if level.strip()]
        if len(log_levels) < 2 or not set(log_levels) <= {"off", "metadata", "full"}:
            parser.error("--log-levels takes two or more of off, metadata, full")
        run_log_levels(
            plan, levels=log_levels, database_url=args.database_url, redis_url=args.redis_url
        )
        return 0
    if args.stream_start:
        from bench.proxy.stream_start import run_stream_start

        run_stream_start(plan, database_url=args.database_url, redis_url=args.redis_url)
        return 0
    if args.passthrough:
        from bench.proxy.passthrough import BASELINE_COMMIT, run_passthrough

        baseline = args.baseline or BASELINE_COMMIT
        run_passthrough(
            plan,
            baseline=None if baseline == "none" else baseline,
            database_url=args.database_url,
            redis_url=args.redis_url,
        )
        return 0
    if args.baseline is not None:
        parser.error("--baseline goes with --passthrough")
    run(
        plan,
        database_url=args.database_url,
        redis_url=args.redis_url,
        mode="quick" if args.quick else "full",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
