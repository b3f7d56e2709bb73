"""Measuring several targets against each other in one run, in alternating rounds.

Each round measures every target — latency at concurrency 1 (``bench.loadgen``) and wrk at
concurrency 64 with the server's CPU time per request — in an order that is reversed every other
round, so a slow moment of a shared machine does not fall on one target only. Only the server of
the target being measured runs (the others are paused with SIGSTOP). The comparison modes
(``bench.proxy.log_levels``, ``bench.proxy.passthrough``) report medians over the rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proxy.processes import Server, snapshot_source, start_openai_fake
from bench.proxy.processes import start_fake as launch_fake
from bench.proxy.targets import Target, gateway_env, prepare_gateway, start_gateway

CONCURRENCY = 64
WRK = f"wrk_c{CONCURRENCY}"


class ComparisonRun:
    """The frame of one comparison run: its work folder under ``bench/results/tmp``, the header
    of its results file, the servers and data folders it starts (stopped and removed when the
    ``with`` block ends, whatever happened), and ``bench/results/<mode>-<timestamp>.json``."""

    def __init__(self, mode: str, plan: Any, **facts: Any) -> None:
        from bench import proxy_bench as bench

        self.plan = plan
        self.started_at = datetime.now(UTC)
        self.name = f"{mode}-{self.started_at.strftime('%Y%m%dT%H%M%SZ')}"
        self.work = bench.RESULTS / "tmp" / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.servers: list[Server] = []
        self._data_dirs: list[Path] = []
        self.results: dict[str, Any] = {
            "started_at": self.started_at.isoformat(),
            "mode": mode,
            **facts,
            "plan": asdict(plan),
            "environment": bench.environment_facts(),
        }

    def __enter__(self) -> ComparisonRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in reversed(self.servers):
            server.stop()
        for data_dir in self._data_dirs:
            shutil.rmtree(data_dir, ignore_errors=True)

    def data_dir(self) -> Path:
        """A fresh data directory for one gateway (its generated secrets, its spool)."""
        self._data_dirs.append(Path(tempfile.mkdtemp(prefix="gw-bench-")))
        return self._data_dirs[-1]

    def start_fakes(self, *, openai: bool = False) -> Any:
        """The fake upstreams on the load generator's core, and the run's
        ``bench.proxy_bench.Context``: a snapshot of the work tree, the request bodies."""
        from bench import proxy_bench as bench

        bench.say("starting the fake upstreams")
        options: dict[str, Any] = {
            "log_dir": self.work, "core": bench.LOADGEN_CORE, "text_deltas": bench.TEXT_DELTAS,
            "env": dict(os.environ),
        }  # fmt: skip
        fake = self.watch(launch_fake(**options))
        openai_fake = self.watch(start_openai_fake(**options)) if openai else None
        context = bench.Context(plan=self.plan, work=self.work, fake=fake, openai_fake=openai_fake)
        context.source = snapshot_source(self.work / "src")
        bench.write_bodies(context)
        return context

    def prepared_gateway_env(
        self,
        *,
        fake_url: str,
        database_url: str,
        redis_url: str,
        source: Path,
        openai_url: str = "",
        log_name: str = "setup.log",
    ) -> tuple[dict[str, str], str]:
        """A gateway's environment (a fresh data directory; production settings unless the plan
        says DEBUG) and its access key, once the code in ``source`` migrated the database and
        created the benchmark's key and credentials."""
        from bench import proxy_bench as bench

        data_dir = self.data_dir()
        env = gateway_env(
            fake_url=fake_url, data_dir=data_dir, database_url=database_url,
            redis_url=redis_url, openai_url=openai_url,
        )  # fmt: skip
        bench.say("preparing the gateway (migrate, key, credentials)")
        access_key = prepare_gateway(
            env, fake_url=fake_url, log=self.work / log_name, openai_url=openai_url, source=source
        )
        if not self.plan.debug:
            env = bench.debug_off(env, data_dir)
        return env, access_key

    def gateway(self, name: str, env: dict[str, str], access_key: str, source: Path) -> Target:
        """A gateway worker of the code in ``source`` on the server core, stopped when the run
        ends."""
        from bench import proxy_bench as bench

        target = start_gateway(
            name=name, env=env, access_key=access_key, log_dir=self.work,
            core=bench.SERVER_CORE, source=source,
        )  # fmt: skip
        self.watch(target.server)
        return target

    def watch(self, server: Server | None) -> Server:
        """``server``, stopped when the run ends."""
        assert server is not None  # noqa: S101 - a started server
        self.servers.append(server)
        return server

    def finish(self, summary: dict[str, Any], table: str, rounds: list[dict[str, Any]]) -> Path:
        """Writes the results file and prints ``table``; returns the file."""
        from bench import proxy_bench as bench

        self.results["rounds"] = rounds
        self.results["summary"] = summary
        self.results["environment"]["load_average_end"] = list(os.getloadavg())
        self.results["finished_at"] = datetime.now(UTC).isoformat()
        output = bench.RESULTS / f"{self.name}.json"
        output.write_text(json.dumps(self.results, indent=2) + "\n")
        print(table)  # noqa: T201 - the command's report
        bench.say(f"wrote {output.relative_to(bench.REPO)}")
        return output


def alternate(context: Any, targets: dict[str, Target], repetitions: int) -> list[dict[str, Any]]:
    """One measurement per target and round; ``context`` is ``bench.proxy_bench.Context``."""
    from bench import proxy_bench as bench

    names = list(targets)
    everyone = list(targets.values())
    rounds: list[dict[str, Any]] = []
    for number in range(repetitions):
        order = names if number % 2 == 0 else list(reversed(names))
        bench.say(f"round {number + 1} of {repetitions}: {', '.join(order)}")
        measured: dict[str, Any] = {}
        for name in order:
            target = targets[name]
            with bench.only_running(target, everyone):
                bench.warm(context, target)
                measured[name] = {
                    "latency_c1": bench.loadgen(
                        context, "latency", target.messages_url, target.body, target.headers,
                        requests=context.plan.latency_requests, warmup=50,
                    ),
                    WRK: bench.throughput(context, target, CONCURRENCY, context.plan.wrk_seconds),
                }  # fmt: skip
        rounds.append(measured)
    return rounds


def median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def medians(names: list[str], rounds: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per target, the medians over the rounds of what ``alternate`` measured."""
    result: dict[str, dict[str, float | None]] = {}
    for name in names:
        measured = [item[name] for item in rounds if name in item]
        result[name] = {
            "c1_p50_ms": median([m["latency_c1"].get("p50_ms") for m in measured]),
            "c1_mean_ms": median([m["latency_c1"].get("mean_ms") for m in measured]),
            f"c{CONCURRENCY}_rps": median([m[WRK].get("rps") for m in measured]),
            f"c{CONCURRENCY}_cpu_ms_per_request": median(
                [m[WRK].get("cpu_ms_per_request") for m in measured]
            ),
            f"c{CONCURRENCY}_main_thread_cpu_ms_per_request": median(
                [m[WRK].get("main_thread_cpu_ms_per_request") for m in measured]
            ),
            f"c{CONCURRENCY}_errors": sum(m[WRK].get("errors", 0) for m in measured),
        }
    return result


def difference(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or baseline is None else round(value - baseline, 3)


def ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else round(value / baseline, 3)
