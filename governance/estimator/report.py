"""The estimator's error against the corpus's real counts, per kind of text and overall.

    python -m governance.estimator.report

Error of one sample: ``(estimate - real) / real``; positive is an over-estimate (the safe side
for reservations and for a client deciding when to compact). Pure: reads ``corpus.json`` only.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.translation.estimate import estimate_text_tokens

CORPUS = Path(__file__).with_name("corpus.json")
REFERENCES = ("claude", "o200k")


@dataclass(frozen=True)
class ErrorStats:
    samples: int
    mean: float  # signed, relative
    mean_abs: float
    p90_abs: float
    worst_under: float  # the most negative error (0 when none under-estimates)
    total: float  # error of the summed counts


def load_corpus() -> list[dict[str, Any]]:
    return list(json.loads(CORPUS.read_text()))


def group(kind: str) -> str:
    if kind.startswith("prose_") and kind != "prose_en":
        return "prose_other"
    return kind


def error_stats(
    samples: list[dict[str, Any]],
    reference: str,
    estimate: Callable[[str], int] = estimate_text_tokens,
) -> ErrorStats:
    errors = []
    estimated_total = real_total = 0
    for sample in samples:
        estimated = estimate(sample["text"])
        real = sample[reference]
        errors.append((estimated - real) / real)
        estimated_total += estimated
        real_total += real
    ordered = sorted(abs(error) for error in errors)
    return ErrorStats(
        samples=len(errors),
        mean=statistics.fmean(errors),
        mean_abs=statistics.fmean(ordered),
        p90_abs=ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        worst_under=min(0.0, min(errors)),
        total=(estimated_total - real_total) / real_total,
    )


def report(estimate: Callable[[str], int] = estimate_text_tokens) -> str:
    samples = load_corpus()
    kinds = sorted({group(sample["kind"]) for sample in samples})
    lines = [
        "| text | samples | reference | mean error | mean abs error | p90 abs error "
        "| worst under-estimate | error of the total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in [*kinds, "all"]:
        chosen = [s for s in samples if kind == "all" or group(s["kind"]) == kind]
        for reference in REFERENCES:
            stats = error_stats(chosen, reference, estimate)
            lines.append(
                f"| {kind} | {stats.samples} | {reference} | {stats.mean:+.1%} | "
                f"{stats.mean_abs:.1%} | {stats.p90_abs:.1%} | {stats.worst_under:+.1%} | "
                f"{stats.total:+.1%} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())  # noqa: T201
