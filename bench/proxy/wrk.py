"""Throughput with wrk: the Lua script that makes its POST, and the numbers it reports.

The script's ``done`` hook prints one JSON line (latencies in microseconds from wrk's own
histogram), so nothing is scraped from wrk's human output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.proxy.processes import pinned

RESULT_PREFIX = "BENCH_WRK "

_DONE = """
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\\n',
    "RESULT_PREFIX", summary.requests, summary.duration, errors.connect, errors.read,
    errors.write, errors.timeout, errors.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
""".replace("RESULT_PREFIX", RESULT_PREFIX)


def _lua_string(value: str) -> str:
    """A Lua long-bracket literal that cannot be closed by the value itself."""
    level = 1
    while f"]{'=' * level}]" in value:
        level += 1
    equals = "=" * level
    return f"[{equals}[{value}]{equals}]"


def lua_script(body: bytes, headers: Sequence[tuple[str, str]]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode('utf-8'))}"]
    for name, value in headers:
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    return "\n".join(lines) + "\n" + _DONE


@dataclass
class WrkResult:
    concurrency: int
    requests: int
    seconds: float
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else None,
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def parse_output(output: str, concurrency: int) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result line:\n{output[-2000:]}")
    seconds = data["duration_us"] / 1e6
    errors = sum(
        data[name]
        for name in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx")
    )
    return WrkResult(
        concurrency=concurrency,
        requests=data["requests"],
        seconds=seconds,
        errors=errors,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


def run_wrk(
    *,
    url: str,
    script_path: Path,
    concurrency: int,
    seconds: float,
    core: int | None,
    threads: int = 1,
    timeout_s: int = 30,
) -> WrkResult:
    """One wrk run; its own timeout is long so slow targets count as slow, not as errors."""
    command = pinned(
        [
            "wrk",
            f"-t{threads}",
            f"-c{max(concurrency, threads)}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(script_path),
            url,
        ],
        core,
    )
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        command, capture_output=True, text=True, timeout=seconds + timeout_s + 60, check=False
    )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return parse_output(finished.stdout, concurrency)
