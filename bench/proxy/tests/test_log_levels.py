"""The log-level comparison's arithmetic: medians over rounds per level, and each level against
the first (added latency at c=1, throughput ratio at c=64, the issue's budgets). Nothing here
asserts on timing."""

from __future__ import annotations

from typing import Any

import pytest

from bench.proxy import log_levels
from bench.proxy_bench import main


def _measured(p50: float, mean: float, rps: float) -> dict[str, Any]:
    return {
        "latency_c1": {"p50_ms": p50, "mean_ms": mean},
        "wrk_c64": {
            "rps": rps,
            "errors": 0,
            "cpu_ms_per_request": rps / 1000,
            "main_thread_cpu_ms_per_request": rps / 1250,
        },
    }


def test_summary_compares_each_level_with_the_first() -> None:
    rounds = [
        {"off": _measured(1.00, 1.10, 2000), "full": _measured(1.15, 1.30, 1900)},
        {"off": _measured(1.20, 1.20, 1800), "full": _measured(1.30, 1.35, 1500)},
        {"off": _measured(1.10, 1.15, 2100), "full": _measured(1.50, 1.60, 1950)},
    ]
    summary = log_levels.summarize(["off", "full"], rounds)
    assert summary["per_level"]["off"] == {
        "c1_p50_ms": 1.1, "c1_mean_ms": 1.15, "c64_rps": 2000, "c64_errors": 0,
        "c64_cpu_ms_per_request": 2.0, "c64_main_thread_cpu_ms_per_request": 1.6,
    }  # fmt: skip
    assert summary["per_level"]["full"]["c1_p50_ms"] == 1.3
    full = summary["against_baseline"]["full"]
    assert full["added_latency_c1_p50_ms"] == pytest.approx(0.2)
    assert full["added_latency_c1_mean_ms"] == pytest.approx(0.2)
    assert full["throughput_ratio_c64"] == 0.95
    assert full["within_latency_budget"] and full["within_throughput_budget"]
    assert "full against off: c=1 p50 +0.2 ms" in log_levels.table(summary)


def test_a_level_over_budget_is_flagged() -> None:
    rounds = [{"off": _measured(1.0, 1.0, 2000), "full": _measured(1.5, 1.6, 1500)}]
    full = log_levels.summarize(["off", "full"], rounds)["against_baseline"]["full"]
    assert full["throughput_ratio_c64"] == 0.75
    assert not full["within_latency_budget"] and not full["within_throughput_budget"]


@pytest.mark.parametrize("levels", ["full", "off,loud"])
def test_the_option_wants_two_known_levels(levels: str, monkeypatch: Any) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/wrk")
    with pytest.raises(SystemExit):
        main(["--log-levels", levels])
