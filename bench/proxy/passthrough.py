"""What passthrough costs on each surface, and against the gateway before the providers change.

Two questions, answered in one run with alternating rounds (``bench.proxy.rounds``):

* does OpenAI passthrough (``/v1/chat/completions`` with the key as bearer, to the fake OpenAI)
  cost more CPU per request than Anthropic passthrough (``/ak/<key>/v1/messages``, to the fake
  Anthropic)? Both served by one worker of the code in the work tree;
* is Anthropic passthrough slower than it was before the request flow became a loop over a plan
  of providers? A second worker runs the code of ``--baseline`` (a commit, default
  ``BASELINE_COMMIT``, exported with ``git archive``) against its own database (the benchmark's
  name + ``_<commit>``, migrated by that code) and its own Redis database (the next number).

Both workers have the same settings (DEBUG as the plan says, usage recording on); only the one
being measured runs.

    bench/run --passthrough --repetitions 5 --debug-off

Writes ``bench/results/passthrough-<timestamp>.json`` and prints a short table.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.proxy.processes import REPO
from bench.proxy.rounds import CONCURRENCY, ComparisonRun, alternate, medians, ratio
from bench.proxy.targets import Target, openai_targets

# The last commit before the request flow became a loop over providers: Anthropic passthrough
# with Bedrock fallback only.
BASELINE_COMMIT = "42229b4"
ANTHROPIC_NOW = "anthropic"
OPENAI_NOW = "openai"
ANTHROPIC_BASELINE = "anthropic-baseline"
CPU = f"c{CONCURRENCY}_cpu_ms_per_request"
RPS = f"c{CONCURRENCY}_rps"


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per target, and the two comparisons (ratios above 1 mean more CPU, or more
    requests per second, than the reference)."""
    names = [
        name for name in (ANTHROPIC_NOW, OPENAI_NOW, ANTHROPIC_BASELINE) if rounds[0].get(name)
    ]
    per_target = medians(names, rounds)
    anthropic = per_target[ANTHROPIC_NOW]
    comparisons: dict[str, dict[str, float | None]] = {}
    if OPENAI_NOW in per_target:
        openai = per_target[OPENAI_NOW]
        comparisons["openai_vs_anthropic"] = {
            "cpu_ratio": ratio(openai[CPU], anthropic[CPU]),
            "rps_ratio": ratio(openai[RPS], anthropic[RPS]),
        }
    if ANTHROPIC_BASELINE in per_target:
        baseline = per_target[ANTHROPIC_BASELINE]
        comparisons["anthropic_vs_baseline"] = {
            "cpu_ratio": ratio(anthropic[CPU], baseline[CPU]),
            "rps_ratio": ratio(anthropic[RPS], baseline[RPS]),
        }
    return {"per_target": per_target, "comparisons": comparisons}


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"| target | c=1 p50 ms | c={CONCURRENCY} req/s | c={CONCURRENCY} CPU ms/request |",
        "|---|---:|---:|---:|",
    ]
    for name, values in summary["per_target"].items():
        lines.append(f"| {name} | {values['c1_p50_ms']} | {values[RPS]} | {values[CPU]} |")
    for name, values in summary["comparisons"].items():
        lines.append(
            f"\n{name.replace('_', ' ')}: CPU per request x{values['cpu_ratio']}, "
            f"requests/s x{values['rps_ratio']}"
        )
    return "\n".join(lines)


def export_commit(commit: str, dest: Path) -> Path:
    """The files of ``commit`` in ``dest`` (``git archive``: no work tree, no checkout)."""
    archive = subprocess.run(  # noqa: S603 - a fixed command
        [shutil.which("git") or "git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def commit_id(commit: str) -> str:
    """The short id of ``commit`` (a name like HEAD or a tag resolved)."""
    return subprocess.run(  # noqa: S603 - a fixed command
        [shutil.which("git") or "git", "-C", str(REPO), "rev-parse", "--short", commit],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def _sibling_database(database_url: str, commit: str) -> str:
    """The baseline's own database, one per commit: each commit's migrations build its schema
    (a database an older commit shares with a newer one ends up in the newer schema)."""
    return f"{database_url}_{commit}"


def _sibling_redis(redis_url: str) -> str:
    base, _, number = redis_url.rpartition("/")
    return f"{base}/{int(number) + 1}" if number.isdigit() else redis_url + "/1"


def _create_database(database_url: str) -> None:
    """The baseline's PostgreSQL database, created when missing (a fresh schema for old code)."""
    if not database_url.startswith("postgres"):
        return
    import psycopg
    from psycopg import sql

    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if found.fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def run_passthrough(plan: Any, *, baseline: str | None, database_url: str, redis_url: str) -> Path:
    """Measure both surfaces now and Anthropic passthrough at ``baseline`` (None: skip it)."""
    from bench import proxy_bench as bench

    with ComparisonRun("passthrough", plan, baseline_commit=baseline) as run:
        context = run.start_fakes(openai=True)
        fake_url, openai_url = context.fake.base_url, context.openai_fake.base_url
        env, access_key = run.prepared_gateway_env(
            fake_url=fake_url, database_url=database_url, redis_url=redis_url,
            openai_url=openai_url, source=context.source,
        )  # fmt: skip
        now = run.gateway("gateway", env, access_key, context.source)
        targets: dict[str, Target] = {ANTHROPIC_NOW: now}
        for target in openai_targets(
            openai_fake=context.openai_fake, relay=None, gateway=now, access_key=access_key,
            litellm=None,
        ):  # fmt: skip
            if target.name == "openai-gateway":
                targets[OPENAI_NOW] = target

        if baseline is not None:
            bench.say(f"preparing the gateway at {baseline}")
            source = export_commit(baseline, run.work / "baseline-src")
            baseline_db = _sibling_database(database_url, commit_id(baseline))
            _create_database(baseline_db)
            baseline_env, baseline_key = run.prepared_gateway_env(
                fake_url=fake_url, database_url=baseline_db, redis_url=_sibling_redis(redis_url),
                source=source, log_name="setup-baseline.log",
            )  # fmt: skip
            old = run.gateway("gateway-baseline", baseline_env, baseline_key, source)
            targets[ANTHROPIC_BASELINE] = old

        rounds = alternate(context, targets, plan.repetitions)
    summary = summarize(rounds)
    return run.finish(summary, table(summary), rounds)
