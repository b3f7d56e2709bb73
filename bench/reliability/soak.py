"""The long soak: steady load through the gateway while the things around it fail in turn.

The gateway runs as a process (as run_gateway starts its web worker) against a scratch
PostgreSQL database reached through a cuttable forwarder, a private redis-server, and the fake
upstream (in this process, so that its faults can be switched). Phases take turns for the
whole ``--duration``:

    normal          nothing fails
    anthropic-529   Anthropic overloaded: fallback to Bedrock, the circuit opens and probes
    anthropic-drop  Anthropic drops every connection
    stream-cut      Anthropic cuts streams mid-way (clients get an SSE error event)
    redis-killed    redis-server killed, restarted (empty) at the end of the phase
    postgres-cut    PostgreSQL unreachable (usage spooled, keys served from the cache)
    postgres-cut+529  the same, with Anthropic overloaded: fallbacks without the database
    both-down       Anthropic drops connections and Bedrock answers 503

Some streamed requests are abandoned by their client after the first chunk throughout. Then,
under the same load, the gateway gets SIGTERM (as run_gateway or an orchestrator stops it): it
finishes the requests in flight, drains its usage writer and exits; it is started again on the
same port, and the clients go on for ``--after-restart-seconds``. At the end the script waits
for the spool to drain and reports, per phase, what the clients got; the 5xx the gateway made
itself; the gateway's memory at the start and the end; the fake's open connections and streams
once idle; for the requests around the SIGTERM alone, and then for the whole run,

    requests served N, events recorded N, events lost 0

Exit status 0 when nothing was lost or doubled, no 5xx was the gateway's own, no stream was
left open upstream and the gateway is alive.

    .venv/bin/python -m bench.reliability.soak --duration 600 [--phase-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench.reliability.common import (
    Forwarder,
    LoadResult,
    Process,
    database_drop,
    database_recreate,
    database_url,
    free_port,
    gateway_environment,
    manage,
    run_load,
    say,
    scratch_dir,
    spool_depth,
    start_gateway,
    tally,
    wait_recorded,
)
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import DropConnection, HttpError, StreamCut

PHASES = (
    "normal",
    "anthropic-529",
    "anthropic-drop",
    "stream-cut",
    "redis-killed",
    "postgres-cut",
    "postgres-cut+529",
    "both-down",
)


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - fixed command line
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]  # noqa: S607
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Phases:
    """Switches the faults of each phase on and off."""

    def __init__(self, fake: FakeUpstream, redis_server: RedisServer, forwarder: Forwarder):
        self.fake = fake
        self.redis = redis_server
        self.forwarder = forwarder
        self.current = "normal"

    def enter(self, name: str) -> None:
        self.current = name
        if name == "anthropic-529":
            self.fake.set_default_fault("anthropic", HttpError(status=529))
        elif name == "anthropic-drop":
            self.fake.set_default_fault("anthropic", DropConnection())
        elif name == "stream-cut":
            self.fake.set_default_fault("anthropic", StreamCut(after_events=4))
        elif name == "redis-killed":
            self.redis.kill()
        elif name == "postgres-cut":
            self.forwarder.cut("refuse")
        elif name == "postgres-cut+529":
            self.forwarder.cut("refuse")
            self.fake.set_default_fault("anthropic", HttpError(status=529))
        elif name == "both-down":
            self.fake.set_default_fault("anthropic", DropConnection())
            self.fake.set_default_fault("bedrock", HttpError(status=503))

    def leave(self) -> None:
        self.fake.set_default_fault("anthropic", None)
        self.fake.set_default_fault("bedrock", None)
        if self.current == "redis-killed":
            self.redis.start()
        elif self.current.startswith("postgres-cut"):
            self.forwarder.restore()
        self.current = "normal"


async def _soak(
    url: str, headers: dict[str, str], phases: Phases, args: argparse.Namespace
) -> LoadResult:
    stop_at = time.monotonic() + args.duration
    current: Callable[[], str] = lambda: phases.current  # noqa: E731
    load = asyncio.create_task(
        run_load(
            url=url,
            headers=headers,
            concurrency=args.concurrency,
            until=lambda: time.monotonic() >= stop_at,
            stream_share=0.4,
            hang_up_share=0.1,
            phase=current,
        )
    )
    for name in itertools.cycle(PHASES):
        remaining = stop_at - time.monotonic()
        if remaining <= 0:
            break
        say(f"phase {name}")
        await asyncio.to_thread(phases.enter, name)
        await asyncio.sleep(min(args.phase_seconds, remaining))
        await asyncio.to_thread(phases.leave)
    return await load


async def _sigterm_under_load(
    url: str, headers: dict[str, str], gateway: Process, args: argparse.Namespace
) -> LoadResult:
    """Load until the gateway has exited, with SIGTERM sent after ``--sigterm-after`` seconds."""
    load = asyncio.create_task(
        run_load(
            url=url,
            headers=headers,
            concurrency=args.concurrency,
            until=lambda: not gateway.alive(),
            stream_share=0.4,
            hang_up_share=0.1,
            phase=lambda: "sigterm",
        )
    )
    await asyncio.sleep(args.sigterm_after)
    say("SIGTERM to the gateway under load")
    gateway.signal(signal.SIGTERM)
    started = time.monotonic()
    exit_status = await asyncio.to_thread(gateway.popen.wait, 120)
    say(f"the gateway exited with status {exit_status} after {time.monotonic() - started:.1f} s")
    return await load


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability.soak")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--phase-seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="gateway_soak")
    parser.add_argument("--bedrock-mode", choices=["invoke", "converse"], default="invoke")
    parser.add_argument("--replay-timeout", type=float, default=120.0)
    parser.add_argument(
        "--sigterm-after", type=float, default=5.0, help="seconds of load before the SIGTERM"
    )
    parser.add_argument("--after-restart-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args(argv)

    workdir = scratch_dir("gateway-soak-")
    data_dir = workdir / "data"
    data_dir.mkdir()
    target = urlsplit(args.database_url)
    forwarder = Forwarder(target.hostname or "127.0.0.1", target.port or 5432).start()
    redis_server = RedisServer()
    redis_server.start()
    # Streams long enough that hang-ups land mid-stream.
    fake = FakeUpstream(text_deltas=16, delta_interval_ms=10, record=False).start()
    direct_url = database_url(args.database_url, args.database)
    environment = gateway_environment(
        data_dir,
        DATABASE_URL=database_url(args.database_url, args.database, forwarder.port),
        REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        GATEWAY_ANTHROPIC_BASE_URL=fake.base_url,
        GATEWAY_BEDROCK_ENDPOINT_URL=fake.base_url,
        GATEWAY_CIRCUIT_COOLDOWN_SECONDS="5",
    )
    gateway = None
    try:
        say(f"scratch database {args.database}, logs in {workdir}")
        database_recreate(args.database_url, args.database)
        manage(environment, "migrate", "--verbosity", "0")
        access_key = (
            manage(environment, "create_access_key", "soak@example.com", "--create-user")
            .strip()
            .splitlines()[-1]
        )
        manage(
            environment,
            "set_provider_credential",
            "bedrock",
            "--secret-stdin",
            "--region",
            "us-east-1",
            "--mode",
            args.bedrock_mode,
            stdin="soak-bedrock-key-0123456789\n",
        )
        gateway, gateway_url = start_gateway(workdir, environment)
        url = f"{gateway_url}/ak/{access_key}/v1/messages"
        headers = {"x-api-key": "sk-ant-soak-run", "anthropic-version": "2023-06-01"}
        asyncio.run(
            run_load(url=url, headers=headers, concurrency=args.concurrency, until=_after(5.0))
        )
        rss_start = _rss_mib(gateway.popen.pid)
        say(f"warmed up; gateway RSS {rss_start:.0f} MiB")

        phases = Phases(fake, redis_server, forwarder)
        result = asyncio.run(_soak(url, headers, phases, args))
        rss_end = _rss_mib(gateway.popen.pid) if gateway.alive() else 0.0

        stopped = asyncio.run(_sigterm_under_load(url, headers, gateway, args))
        stop_status = gateway.popen.returncode
        gateway, _ = start_gateway(
            workdir, environment, port=urlsplit(gateway_url).port, name="gateway-restarted"
        )
        # Traffic after the restart starts its usage writer, which replays the spool.
        after = asyncio.run(
            run_load(
                url=url,
                headers=headers,
                concurrency=args.concurrency,
                until=_after(args.after_restart_seconds),
                phase=lambda: "after restart",
            )
        )
        stopped_ids = list(stopped.request_ids)
        for extra in (stopped, after):
            result.request_ids += extra.request_ids
            result.details.update(extra.details)
            result.own_errors.update(extra.own_errors)
            result.transport_errors.update(extra.transport_errors)
            for name, outcomes in extra.by_phase.items():
                result.by_phase.setdefault(name, outcomes.__class__()).update(outcomes)

        say("waiting for the usage spool to be replayed and the fake to go idle")
        recorded = wait_recorded(direct_url, result.request_ids, data_dir, args.replay_timeout)
        with contextlib.suppress(TimeoutError):
            fake.wait_until(lambda: fake.requests_in_flight == 0, timeout=30)
        counts = tally(result.request_ids, recorded)
        stop_counts = tally(stopped_ids, recorded)

        say("what the clients got, by phase:")
        for name, outcomes in result.by_phase.items():
            say(f"  {name:15} {dict(sorted(outcomes.items()))}")
        say(f"5xx made by the gateway itself: {dict(result.own_errors) or 'none'}")
        say(f"transport errors: {dict(result.transport_errors) or 'none'}")
        say(f"gateway RSS {rss_start:.0f} MiB after warm-up, {rss_end:.0f} MiB at the end")
        say(
            f"fake upstream idle: {fake.connections_open} connections open, "
            f"{fake.streams_in_flight} streams and {fake.requests_in_flight} requests in flight"
        )
        say(f"events doubled {counts.doubled}, spool depth {spool_depth(data_dir)}")
        say(
            f"SIGTERM under load (exit status {stop_status}): {stop_counts.line()}, "
            f"{stopped.incomplete_streams} streams ended early"
        )
        if counts.lost_ids:
            lost = [f"{rid}: {result.details.get(rid, '?')}" for rid in counts.lost_ids]
            (workdir / "lost-request-ids.txt").write_text("\n".join(lost) + "\n")
            say(f"lost request ids (first 5 of {counts.lost}): {lost[:5]}")
        print(counts.line())  # noqa: T201 - the run's result line
        failed = (
            counts.lost
            or counts.doubled
            # uvicorn ends by raising the stop signal again, once it has shut down.
            or stop_status not in (0, -signal.SIGTERM)
            or result.own_errors
            or fake.streams_in_flight
            or not gateway.alive()
        )
        return 1 if failed else 0
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        redis_server.kill()
        forwarder.stop()
        if not args.keep:
            database_drop(args.database_url, args.database)
            shutil.rmtree(workdir, ignore_errors=True)


def _after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


if __name__ == "__main__":
    raise SystemExit(main())
