"""The passthrough comparison's arithmetic and options. Nothing here asserts on timing."""

from __future__ import annotations

from typing import Any

import pytest

from bench.proxy import passthrough
from bench.proxy_bench import main


def _measured(p50: float, rps: float, cpu: float) -> dict[str, Any]:
    return {
        "latency_c1": {"p50_ms": p50, "mean_ms": p50},
        "wrk_c64": {"rps": rps, "errors": 0, "cpu_ms_per_request": cpu},
    }


def test_openai_and_the_baseline_are_compared_with_anthropic_now() -> None:
    rounds = [
        {
            "anthropic": _measured(1.0, 1000, 1.00),
            "openai": _measured(1.1, 900, 1.10),
            "anthropic-baseline": _measured(1.5, 500, 2.00),
        },
        {
            "anthropic": _measured(1.2, 800, 1.20),
            "openai": _measured(1.3, 700, 1.30),
            "anthropic-baseline": _measured(1.7, 400, 2.40),
        },
    ]
    summary = passthrough.summarize(rounds)
    assert summary["per_target"]["openai"]["c64_cpu_ms_per_request"] == 1.2
    assert summary["comparisons"]["openai_vs_anthropic"] == {"cpu_ratio": 1.091, "rps_ratio": 0.889}
    assert summary["comparisons"]["anthropic_vs_baseline"] == {"cpu_ratio": 0.5, "rps_ratio": 2.0}
    assert "openai vs anthropic: CPU per request x1.091" in passthrough.table(summary)


def test_without_a_baseline_only_the_surfaces_are_compared() -> None:
    rounds = [{"anthropic": _measured(1.0, 1000, 1.0), "openai": _measured(1.0, 1000, 0.9)}]
    summary = passthrough.summarize(rounds)
    assert list(summary["comparisons"]) == ["openai_vs_anthropic"]
    assert summary["comparisons"]["openai_vs_anthropic"]["cpu_ratio"] == 0.9


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/10", "redis://127.0.0.1:6379/11"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/1"),
    ],
)
def test_the_baseline_gets_the_next_redis_database(url: str, expected: str) -> None:
    assert passthrough._sibling_redis(url) == expected


def test_each_baseline_commit_gets_a_database_of_its_own() -> None:
    url = "postgres://postgres@127.0.0.1:5432/gw_h9"
    head = passthrough.commit_id("HEAD")
    assert head and head == passthrough.commit_id(head)
    assert passthrough._sibling_database(url, head) == f"{url}_{head}"
    assert passthrough._sibling_database(url, "42229b4") != passthrough._sibling_database(url, head)


def test_a_baseline_without_the_passthrough_mode_is_refused(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/wrk")
    with pytest.raises(SystemExit) as exited:
        main(["--baseline", "abc123"])
    assert exited.value.code == 2
    assert "--baseline goes with --passthrough" in capsys.readouterr().err
