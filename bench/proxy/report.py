"""Medians over repetitions, the hot path's targets, and the markdown report (latest.md).

Pure functions over the result dict that ``bench.proxy_bench`` writes as JSON. Targets are
named by surface: ``direct``, ``relay``, ``gateway``, ``litellm`` on the Anthropic surface;
``openai-direct``, ``openai-relay``, ``openai-gateway`` (bearer ``/v1/``),
``openai-gateway-ak`` (``/ak/<key>/v1/``), ``openai-litellm`` and ``openai-translated`` (an
OpenAI client asking the gateway for a Claude model) on the OpenAI one.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# A proxy whose requests/s come within 10% of the fake's own ceiling measures the fake.
UPSTREAM_BOUND_SHARE = 0.9
# The gateway's CPU per request may be at most this many times the relay floor's.
FLOOR_CPU_RATIO = 3.0
FLOOR_CONCURRENCY = 64
ANTHROPIC_COLUMNS = (
    ("direct", "direct"),
    ("relay", "relay"),
    ("gateway", "gateway"),
    ("LiteLLM", "litellm"),
)
OPENAI_COLUMNS = (
    ("direct", "openai-direct"),
    ("relay", "openai-relay"),
    ("gateway /v1/", "openai-gateway"),
    ("gateway /ak/", "openai-gateway-ak"),
    ("translated ²", "openai-translated"),
    ("LiteLLM", "openai-litellm"),
)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric leaf over runs (keys missing from a run are skipped)."""
    runs = [run for run in runs if isinstance(run, dict)]
    if not runs:
        return {}
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs if key in run]
        first = values[0]
        if isinstance(first, dict):
            merged[key] = median_of(values)
        elif isinstance(first, bool) or not isinstance(first, int | float):
            merged[key] = first
        else:
            numbers = [
                value
                for value in values
                if isinstance(value, int | float) and not math.isnan(value)
            ]
            merged[key] = round(statistics.median(numbers), 4) if numbers else None
    return merged


def ceiling_rps(fake_ceiling: dict[str, Any]) -> float:
    return max((run.get("rps") or 0.0) for run in fake_ceiling.values()) if fake_ceiling else 0.0


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _diff(left: Any, right: Any) -> float | None:
    if isinstance(left, int | float) and isinstance(right, int | float):
        return round(left - right, 3)
    return None


def _ratio(left: Any, right: Any) -> float | None:
    if isinstance(left, int | float) and isinstance(right, int | float) and right:
        return round(left / right, 2)
    return None


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def targets_check(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The hot path's targets against this run's medians (one worker, both surfaces)."""
    medians = results.get("medians", {})
    gateway = medians.get("gateway", {})
    direct = medians.get("direct", {})
    memory = results.get("memory", {}).get("gateway", {})
    rows = []

    def add(label: str, measured: float | None, limit: float | None, kind: str, unit: str) -> None:
        met = None
        if measured is not None and limit is not None:
            met = measured <= limit if kind == "max" else measured >= limit
        rows.append(
            {
                "target": label,
                "measured": measured,
                "limit": limit,
                "kind": kind,
                "unit": unit,
                "met": met,
            }
        )

    def added(key: str, field: str) -> float | None:
        return _diff(_get(gateway, key, field), _get(direct, key, field))

    for surface, name, litellm in (
        ("Anthropic", "gateway", "litellm"),
        ("OpenAI /v1/", "openai-gateway", "openai-litellm"),
    ):
        add(
            f"requests/s at c=64, gateway ÷ LiteLLM ({surface})",
            _ratio(
                _get(medians.get(name), "wrk_c64", "rps"),
                _get(medians.get(litellm), "wrk_c64", "rps"),
            ),
            10.0,
            "min",
            "×",
        )
    for surface, prefix in (("Anthropic", ""), ("OpenAI", "openai-")):
        add(
            f"gateway CPU per request ÷ relay floor, c={FLOOR_CONCURRENCY} ({surface})",
            cpu_ratio(medians, f"{prefix}gateway", f"{prefix}relay"),
            FLOOR_CPU_RATIO,
            "max",
            "×",
        )
    add("added latency c=1 p50", added("latency_c1", "p50_ms"), 1.0, "max", "ms")
    add("added latency c=1 p99", added("latency_c1", "p99_ms"), 3.0, "max", "ms")
    add("stream added TTFB c=1 (p50)", added("stream_c1", "ttfb_p50_ms"), 2.0, "max", "ms")
    add(
        "stream added TTFB c=32, staggered starts (p50)",
        added("stream_c32", "ttfb_p50_ms"),
        2.0,
        "max",
        "ms",
    )
    add(
        "stream added TTFB, burst of 32 simultaneous starts (p50)",
        added("stream_burst32", "ttfb_p50_ms"),
        50.0,
        "max",
        "ms",
    )
    for key, label in (("stream_c1", "c=1"), ("stream_c32", "c=32")):
        add(
            f"stream added inter-chunk gap p99 {label}",
            added(key, "gap_p99_ms"),
            1.0,
            "max",
            "ms",
        )
    add(
        "fallback (529 → Bedrock InvokeModel stream) added TTFB over the direct stream, c=1",
        _diff(
            _get(gateway, "fallback_stream_c1", "ttfb_p50_ms"),
            _get(direct, "stream_c1", "ttfb_p50_ms"),
        ),
        3.0,
        "max",
        "ms",
    )
    add(
        "two workers ÷ one worker, requests/s at c=64",
        _get(results.get("workers"), "ratio"),
        1.7,
        "min",
        "×",
    )
    add("worker RSS idle", memory.get("idle_mib"), 120.0, "max", "MiB")
    add(
        f"RSS growth over {_fmt(_get(memory, 'soak', 'requests'))} requests",
        _get(memory, "soak", "growth_pct"),
        5.0,
        "max",
        "%",
    )
    return rows


def cpu_ratio(medians: dict[str, Any], name: str, floor: str) -> float | None:
    """``name``'s server CPU time per request at the floor concurrency ÷ ``floor``'s."""
    key = f"wrk_c{FLOOR_CONCURRENCY}"
    return _ratio(
        _get(medians.get(name), key, "cpu_ms_per_request"),
        _get(medians.get(floor), key, "cpu_ms_per_request"),
    )


def _metric_rows(
    results: dict[str, Any], names: list[str] | None = None, *, anthropic: bool = True
) -> list[tuple[str, list[Any]]]:
    """The table's rows, one value per target of ``names``; the fallback and memory rows only
    for the Anthropic table (``anthropic``)."""
    medians = results.get("medians", {})
    memory = results.get("memory", {})
    names = names or ["direct", "gateway", "litellm"]

    def row(label: str, *path: str) -> tuple[str, list[Any]]:
        return label, [_get(medians.get(name), *path) for name in names]

    rows = [
        row("c=1 latency p50 (ms)", "latency_c1", "p50_ms"),
        row("c=1 latency p99 (ms)", "latency_c1", "p99_ms"),
    ]
    for concurrency in results.get("plan", {}).get("concurrencies", (16, 64, 256)):
        key = f"wrk_c{concurrency}"
        rows += [
            row(f"c={concurrency} requests/s", key, "rps"),
            row(f"c={concurrency} p50 (ms)", key, "p50_ms"),
            row(f"c={concurrency} p99 (ms)", key, "p99_ms"),
            row(f"c={concurrency} server CPU ms/request", key, "cpu_ms_per_request"),
            row(f"c={concurrency} error rate", key, "error_rate"),
        ]
    for key, label in (
        ("stream_c1", "stream c=1"),
        ("stream_c32", "stream c=32 staggered"),
        ("stream_burst32", "stream burst of 32"),
    ):
        rows += [
            row(f"{label} TTFB p50 (ms)", key, "ttfb_p50_ms"),
            row(f"{label} TTFB p99 (ms)", key, "ttfb_p99_ms"),
            row(f"{label} inter-chunk gap p99 (ms)", key, "gap_p99_ms"),
            row(f"{label} errors", key, "errors"),
        ]
    rates = error_rates(results)
    if anthropic:
        fallback = {
            "direct": _get(medians.get("direct"), "stream_c1", "ttfb_p50_ms"),
            "gateway": _get(medians.get("gateway"), "fallback_stream_c1", "ttfb_p50_ms"),
        }
        rows.append(("fallback stream c=1 TTFB p50 (ms) ¹", [fallback.get(n) for n in names]))
    rows.append(("error rate, all runs", [rates.get(name) for name in names]))
    if anthropic:
        rows.append(
            (
                "worker RSS idle (MiB)",
                [None if name == "direct" else _get(memory, name, "idle_mib") for name in names],
            )
        )
    rows.append(
        (
            "worker RSS max under load, c=256 (MiB)",
            [
                None
                if name.endswith("direct")
                else _get(medians.get(name), "wrk_c256", "rss_max_mib")
                for name in names
            ],
        )
    )
    return rows


def _upstream_bound(results: dict[str, Any]) -> list[str]:
    """Proxy results within 10% of their fake's ceiling: the Anthropic fake's measured ceiling,
    and for the OpenAI surface the best throughput of the fake OpenAI called directly."""
    medians = results.get("medians", {})
    ceilings = {
        "": ceiling_rps(results.get("fake_ceiling", {})),
        "openai-": max(
            (
                run.get("rps") or 0.0
                for key, run in (medians.get("openai-direct") or {}).items()
                if key.startswith("wrk_c") and isinstance(run, dict)
            ),
            default=0.0,
        ),
    }
    flagged = []
    for name, measured in medians.items():
        if name.endswith("direct") or not isinstance(measured, dict):
            continue
        ceiling = ceilings["openai-" if name.startswith("openai-") else ""]
        for key, run in measured.items():
            if (
                key.startswith("wrk_c")
                and isinstance(run, dict)
                and ceiling
                and (run.get("rps") or 0) >= (UPSTREAM_BOUND_SHARE * ceiling)
            ):
                flagged.append(f"{name} {key}")
    return flagged


def markdown(results: dict[str, Any], *, json_name: str) -> str:
    environment = results.get("environment", {})
    plan = results.get("plan", {})
    out = [
        "# Proxy benchmark: direct vs relay floor vs gateway vs LiteLLM",
        "",
        f"Run `{results.get('started_at', '')}` ({results.get('mode')} mode, "
        f"{plan.get('repetitions')} repetition(s), medians), raw data in `{json_name}`. "
        f"{environment.get('cores')} cores ({environment.get('pinning')}); "
        f"load average at start/end {_load(environment)}, "
        f"LiteLLM {environment.get('litellm')}, {environment.get('wrk')}. The gateway ran with "
        f"DEBUG={'true' if plan.get('debug', True) else 'false'}, PostgreSQL "
        f"(`{results.get('database_url')}`), Redis and usage recording on.",
        "",
        f"Fake upstream ceiling (wrk straight at the fake): "
        f"**{_fmt(ceiling_rps(results.get('fake_ceiling', {})))} requests/s**. "
        + (
            "Upstream-bound (within 10% of it): " + ", ".join(_upstream_bound(results)) + "."
            if _upstream_bound(results)
            else "No proxy result is within 10% of it (none is upstream-bound)."
        ),
        "",
        "## Targets",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|:---:|",
    ]
    for check in targets_check(results):
        sign = "≤" if check["kind"] == "max" else "≥"
        met = {True: "yes", False: "**no**", None: "–"}[check["met"]]
        limit = "–" if check["limit"] is None else f"{sign} {_fmt(check['limit'])} {check['unit']}"
        out.append(
            f"| {check['target']} | {_fmt(check['measured'])} {check['unit']} | {limit} | {met} |"
        )
    out += ["", "## Anthropic surface: direct, relay floor, gateway, LiteLLM", ""]
    out += _table(
        results,
        ANTHROPIC_COLUMNS,
        (("gateway", "direct"), ("gateway", "relay"), ("LiteLLM", "gateway")),
        anthropic=True,
    )
    out += [
        "",
        "¹ Fallback: the gateway's stream when Anthropic answers 529 at once and Bedrock "
        "(InvokeModel with response stream) answers, against the Anthropic fake's stream called "
        "directly (the *direct* column). Streams at c=32 start 40 ms apart; a burst starts 32 "
        "at the same moment.",
        "",
    ]
    if any(name.startswith("openai-") for name in results.get("medians", {})):
        out += ["## OpenAI surface: direct, relay floor, gateway, LiteLLM, translation", ""]
        out += _table(
            results,
            OPENAI_COLUMNS,
            (
                ("gateway /v1/", "direct"),
                ("gateway /v1/", "relay"),
                ("translated ²", "gateway /v1/"),
                ("LiteLLM", "gateway /v1/"),
            ),
            anthropic=False,
        )
        out += [
            "",
            "² An OpenAI client asking the gateway for `claude-sonnet-4-5` on "
            "`/v1/chat/completions`: translated to Anthropic Messages, answered by the "
            "Anthropic fake, translated back; compare with the OpenAI passthrough "
            "(*gateway /v1/*).",
            "",
        ]
    out += _floor_section(results)
    soak = _get(results, "memory", "gateway", "soak")
    if soak:
        out += [
            f"Memory soak: {_fmt(soak['requests'])} requests through the gateway (wrk, c=64, "
            f"{_fmt(soak['errors'])} errors): RSS {_fmt(soak['rss_before_mib'])} → "
            f"{_fmt(soak['rss_after_mib'])} MiB ({_fmt(soak['growth_pct'])}%).",
            "",
        ]
    out += _choices_section(results)
    out += _profile_section(results)
    return "\n".join(out) + "\n"


def _table(
    results: dict[str, Any],
    columns: tuple[tuple[str, str], ...],
    ratios: tuple[tuple[str, str], ...],
    *,
    anthropic: bool,
) -> list[str]:
    """One surface's metrics, a column per target and per ratio (by column labels)."""
    labels = [label for label, _name in columns]
    names = [name for _label, name in columns]
    header = "| metric | " + " | ".join(labels) + " | "
    header += " | ".join(f"{top} ÷ {bottom}" for top, bottom in ratios) + " |"
    out = [header, "|---|" + "---:|" * (len(labels) + len(ratios))]
    for label, values in _metric_rows(results, names, anthropic=anthropic):
        by_label = dict(zip(labels, values, strict=True))
        cells = [_fmt(value) for value in values]
        cells += [_fmt(_ratio(by_label[top], by_label[bottom])) for top, bottom in ratios]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _floor_section(results: dict[str, Any]) -> list[str]:
    """Server CPU per request at c=64 against the relay floor, both surfaces."""
    medians = results.get("medians", {})
    key = f"wrk_c{FLOOR_CONCURRENCY}"
    rows = []
    for surface, prefix in (("Anthropic", ""), ("OpenAI", "openai-")):
        floor = _get(medians.get(f"{prefix}relay"), key, "cpu_ms_per_request")
        if floor is None:
            continue
        names = ["direct", "relay", "gateway", "gateway-ak", "translated", "litellm"]
        for name in names:
            value = _get(medians.get(prefix + name), key, "cpu_ms_per_request")
            if value is not None:
                rows.append(
                    f"| {surface} | {prefix + name} | {_fmt(value, 3)} | "
                    f"{_fmt(_ratio(value, floor))} |"
                )
    if not rows:
        return []
    out = [
        f"## CPU per request against the relay floor (wrk c={FLOOR_CONCURRENCY})",
        "",
        "Server CPU time (user + system, the measured server process and its children, from "
        "`/proc/<pid>/stat`) ÷ requests served. *direct* is the fake's own CPU per request; "
        f"the target is gateway ≤ {_fmt(FLOOR_CPU_RATIO)}× the relay.",
        "",
        "| surface | target | CPU ms/request | ÷ relay |",
        "|---|---|---:|---:|",
        *rows,
        "",
    ]
    micro = results.get("translation_micro")
    if micro:
        out += [
            f"Translation micro-benchmark (`bench/proxy/translate_micro.py`, {micro['json']}, a "
            f"{_fmt(micro['request_bytes'])}-byte chat request and a "
            f"{micro['stream_events']}-event stream, CPU per request): passthrough "
            f"{_fmt(micro['passthrough_us'])} µs, translated {_fmt(micro['translated_us'])} µs, "
            f"**{_fmt(micro['added_us'])} µs added** (target ≤ {micro['target_added_us']} µs).",
            "",
        ]
    return out


def _load(environment: dict[str, Any]) -> str:
    start = environment.get("load_average_start") or [None]
    end = environment.get("load_average_end") or [None]
    return f"{_fmt(start[0])}/{_fmt(end[0])} (other work on the machine adds noise)"


def error_rates(results: dict[str, Any]) -> dict[str, float | None]:
    """Failed requests ÷ requests over every wrk run and stream run of each target."""
    totals: dict[str, list[int]] = {}
    for repetition in results.get("repetitions", []):
        for name, measured in repetition.items():
            counts = totals.setdefault(name, [0, 0])
            for key, run in measured.items():
                if key.startswith("wrk_c"):
                    counts[0] += run.get("errors", 0)
                    counts[1] += run.get("requests", 0)
                elif key.startswith(("stream_", "fallback_")):
                    counts[0] += run.get("errors", 0)
                    counts[1] += run.get("streams", 0)
                elif key == "latency_c1":
                    counts[0] += run.get("errors", 0)
                    counts[1] += run.get("requests", 0)
    return {name: (errors / count if count else None) for name, (errors, count) in totals.items()}


def _stack_row(name: str, run: dict[str, Any]) -> str:
    return (
        f"| {name} | {_fmt(_get(run, 'latency_c1', 'p50_ms'))} | "
        f"{_fmt(_get(run, 'latency_c1', 'p99_ms'))} | {_fmt(_get(run, 'wrk_c64', 'rps'))} | "
        f"{_fmt(_get(run, 'wrk_c64', 'cpu_ms_per_request'))} | "
        f"{_fmt(_get(run, 'stream_c1', 'ttfb_p50_ms'))} | {_fmt(run.get('rss_idle_mib'))} |"
    )


def _choices_section(results: dict[str, Any]) -> list[str]:
    choices = results.get("choices")
    out: list[str] = []
    header = [
        "| variant | c=1 p50 (ms) | c=1 p99 (ms) | c=64 req/s | CPU ms/request | "
        "stream TTFB p50 (ms) | RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if choices:
        out += ["## Stack choices", ""]
        if "pending" in choices:
            out += [f"Pending: {choices['pending']}", ""]
        if "asgi_server" in choices:
            out += ["ASGI server (the gateway, one worker each):", "", *header]
            out += [_stack_row(name, run) for name, run in choices["asgi_server"].items()]
            out.append("")
        transport = choices.get("transport")
        if transport:
            out += [
                "httpx transport (an httpx.AsyncClient calling the fake, no gateway):",
                "",
                "| transport | concurrency | req/s | p50 (ms) | client CPU ms/request |",
                "|---|---:|---:|---:|---:|",
            ]
            for name, runs in transport.items():
                for run in runs:
                    out.append(
                        f"| {name} | {run['concurrency']} | {_fmt(run['rps'])} | "
                        f"{_fmt(run['p50_ms'])} | {_fmt(run['cpu_ms_per_request'], 3)} |"
                    )
            out.append("")
        parsing = choices.get("json")
        if parsing:
            out += [
                f"JSON library on a typical Claude Code request body "
                f"({_fmt(parsing['body_bytes'])} bytes), µs per call:",
                "",
                "| library | loads | dumps |",
                "|---|---:|---:|",
            ]
            for name in ("json", "orjson"):
                out.append(
                    f"| {name} | {_fmt(parsing['loads_us'][name])} | "
                    f"{_fmt(parsing['dumps_us'][name])} |"
                )
            out.append("")
    return out


def _profile_section(results: dict[str, Any]) -> list[str]:
    from bench.proxy.profile import as_markdown

    out: list[str] = []
    for key, surface in (("profile", "Anthropic"), ("profile_openai", "OpenAI")):
        summary = results.get(key)
        if not summary:
            continue
        out += [
            f"## Where the gateway worker spends its CPU: {surface} passthrough "
            "(py-spy, GIL samples, wrk c=64)",
            "",
            as_markdown(summary),
        ]
    return out
