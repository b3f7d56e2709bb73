"""Measuring several targets against each other in one run, in alternating rounds.

Each round measures every target — latency at concurrency 1 (``bench.loadgen``) and wrk at
concurrency 64 with the server's CPU time per request — in an order that is reversed every other
round, so a slow moment of a shared machine does not fall on one target only. Only the server of
the target being measured runs (the others are paused with SIGSTOP). The comparison modes
(``bench.proxy.log_levels``, ``bench.proxy.passthrough``) report medians over the rounds.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.proxy.targets import Target

CONCURRENCY = 64
WRK = f"wrk_c{CONCURRENCY}"


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
            f"c{CONCURRENCY}_errors": sum(m[WRK].get("errors", 0) for m in measured),
        }
    return result


def difference(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or baseline is None else round(value - baseline, 3)


def ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else round(value / baseline, 3)
