"""What request logging costs the gateway: the same gateway run once per logging level
(``GATEWAY_REQUEST_LOG_LEVEL``, default ``off`` against ``full``) in one run, on the Anthropic
surface with the benchmark's plain request.

One gateway worker per level, started side by side against the same fake upstream, database and
Redis; only the worker being measured runs (the other is paused with SIGSTOP). Each round
measures every level — latency at concurrency 1 (``bench.loadgen``) and wrk at concurrency 64 —
in an order that alternates between rounds, so a slow moment of a shared machine does not fall
on one level only. Reported per level as the median over rounds, and against the first level:
added latency at c=1 (p50 and mean, ms) and throughput at c=64 as a ratio, beside the targets of
the request-log issue (at most 0.2 ms added, at least 0.90 of the throughput).

    bench/run --log-levels off,full --quick
    bench/run --log-levels off,full --wrk-seconds 3 --latency-requests 300 --repetitions 2

Writes ``bench/results/log-levels-<timestamp>.json`` and prints a short table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.proxy.rounds import CONCURRENCY, ComparisonRun, alternate, difference, medians, ratio
from bench.proxy.targets import Target

# The budget for full request logging against off.
ADDED_LATENCY_BUDGET_MS = 0.2
THROUGHPUT_RATIO_FLOOR = 0.90


def summarize(levels: list[str], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per level over the rounds, and each level against the first one."""
    per_level = medians(levels, rounds)
    baseline = per_level[levels[0]]
    against: dict[str, dict[str, Any]] = {}
    for level in levels[1:]:
        values = per_level[level]
        added_p50 = difference(values["c1_p50_ms"], baseline["c1_p50_ms"])
        added_mean = difference(values["c1_mean_ms"], baseline["c1_mean_ms"])
        throughput = ratio(values[f"c{CONCURRENCY}_rps"], baseline[f"c{CONCURRENCY}_rps"])
        against[level] = {
            "added_latency_c1_p50_ms": added_p50,
            "added_latency_c1_mean_ms": added_mean,
            f"throughput_ratio_c{CONCURRENCY}": throughput,
            "within_latency_budget": None if added_p50 is None
            else added_p50 <= ADDED_LATENCY_BUDGET_MS,
            "within_throughput_budget": None if throughput is None
            else throughput >= THROUGHPUT_RATIO_FLOOR,
        }  # fmt: skip
    return {"baseline": levels[0], "per_level": per_level, "against_baseline": against}


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"| level | c=1 p50 ms | c=1 mean ms | c={CONCURRENCY} req/s |",
        "|---|---|---|---|",
    ]
    for level, values in summary["per_level"].items():
        lines.append(
            f"| {level} | {values['c1_p50_ms']} | {values['c1_mean_ms']} | "
            f"{values[f'c{CONCURRENCY}_rps']} |"
        )
    for level, values in summary["against_baseline"].items():
        lines.append(
            f"\n{level} against {summary['baseline']}: c=1 p50 "
            f"{values['added_latency_c1_p50_ms']:+} ms (mean "
            f"{values['added_latency_c1_mean_ms']:+} ms; budget +{ADDED_LATENCY_BUDGET_MS} ms), "
            f"c={CONCURRENCY} throughput x{values[f'throughput_ratio_c{CONCURRENCY}']} "
            f"(budget x{THROUGHPUT_RATIO_FLOOR})"
        )
    return "\n".join(lines)


def run_log_levels(plan: Any, *, levels: list[str], database_url: str, redis_url: str) -> Path:
    """Measure the gateway at each logging level; returns the results file."""
    from bench import proxy_bench as bench

    with ComparisonRun("log-levels", plan, levels=levels) as run:
        context = run.start_fakes()
        env, access_key = run.prepared_gateway_env(
            fake_url=context.fake.base_url, database_url=database_url, redis_url=redis_url,
            source=context.source,
        )  # fmt: skip
        targets: dict[str, Target] = {}
        for level in levels:
            bench.say(f"starting a gateway worker logging at level {level}")
            level_env = {**env, "GATEWAY_REQUEST_LOG_LEVEL": level}
            targets[level] = run.gateway(f"gateway-{level}", level_env, access_key, context.source)
        rounds = alternate(context, targets, plan.repetitions)
    summary = summarize(levels, rounds)
    return run.finish(summary, table(summary), rounds)
