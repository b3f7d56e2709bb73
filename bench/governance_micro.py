"""Micro-benchmark of the governance checks on the warm path: CPU per request of the admission
alone and of the admission with its settlement, without a web server.

The request and rules of ``governance/tests/test_hot_path.py``: a Claude Code-sized request
(40 turns, 15 tools, ``max_tokens`` 32000) against 7 counters at once (requests per minute for
the key and the user, tokens per minute, concurrency, a USD and a token budget, a global token
budget). In process (the embedded default), and in Redis when ``--redis-url`` is given:

    DEBUG=true GATEWAY_DATA_DIR=$(mktemp -d) .venv/bin/python -m bench.governance_micro \\
        --redis-url redis://127.0.0.1:6379/9

Prints per round (admission alone and with settlement alternate) the CPU time
(``time.process_time``) per request, then the medians. Requests are made one at a time, so every
admission is a script call of its own: this is the cost of an idle worker's request, not of a
busy one's (``bench.governance_bench`` measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any


def _setup(redis_url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ["REDIS_URL"] = redis_url
    import django

    django.setup()


async def _timed(settle: bool, requests: int) -> float:
    from governance.enforcement import Admission, admit, settlements_drain
    from governance.tests.test_hot_path import _call
    from proxy.translation.sse import Usage

    # Only the checks are timed: the request objects are the proxy's, made beforehand.
    prepared = [_call() for _ in range(requests)]
    admissions = []
    started = time.process_time()
    for call, plan in prepared:
        admission = await admit(call, plan)
        assert isinstance(admission, Admission)
        if settle:
            admission.settle("anthropic", 200, Usage(input_tokens=10, output_tokens=5))
        else:
            admissions.append(admission)
    await settlements_drain()
    elapsed = (time.process_time() - started) / requests * 1000
    for admission in admissions:  # release the slots outside the timing
        admission.release()
    await settlements_drain()
    return elapsed


async def _rounds(rounds: int, requests: int) -> dict[str, list[float]]:
    from governance import selectors
    from governance.tests.test_hot_path import _one, _warm

    # The budgets' seeds are the cold path: no database needed here.
    selectors.budget_spent = lambda rule, *, start, end: (0, 0)  # type: ignore[assignment]
    _warm()
    await _one()
    results: dict[str, list[float]] = {"admission": [], "admission + settlement": []}
    for number in range(rounds):
        for name, settle in (("admission", False), ("admission + settlement", True)):
            results[name].append(await _timed(settle, requests))
            sys.stdout.write(
                json.dumps({"round": number, "what": name, "cpu_ms": round(results[name][-1], 4)})
                + "\n"
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.governance_micro", description=__doc__)
    parser.add_argument("--redis-url", default="", help="empty: counted in process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args(argv)
    _setup(args.redis_url)
    from governance.counters import counters

    try:
        results = asyncio.run(_rounds(args.rounds, args.requests))
    finally:
        counters.reset()
    medians: dict[str, Any] = {
        name: round(statistics.median(values), 4) for name, values in results.items()
    }
    where = "redis" if args.redis_url else "in process"
    sys.stdout.write(json.dumps({"counters": where, "median_cpu_ms": medians}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
