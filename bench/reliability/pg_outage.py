"""PostgreSQL away for 30 seconds under load: every request served is recorded, once.

The gateway (a uvicorn process, as run_gateway starts it) reaches PostgreSQL through a TCP
forwarder this script controls; the fake upstream answers as Anthropic. Clients send requests
(a quarter streamed) before, during and after the outage. During it, the forwarder refuses
connections and resets the open ones (``--mode hang`` instead accepts and never answers, as a
dead network path does). After it, the script waits for the usage spool to be replayed and
compares the request ids the clients were given with the usage events in the database:

    requests served N, events recorded N, events lost 0

Exit status 0 when nothing was lost or doubled and the gateway made no 5xx of its own.

    .venv/bin/python -m bench.reliability.pg_outage [--outage 30] [--mode hang]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from bench.reliability.common import (
    Forwarder,
    LoadResult,
    database_drop,
    database_recreate,
    database_url,
    gateway_environment,
    manage,
    run_load,
    say,
    scratch_dir,
    spool_depth,
    start_fake,
    start_gateway,
    tally,
    wait_recorded,
)


async def _load_with_outage(
    url: str, headers: dict[str, str], forwarder: Forwarder, args: argparse.Namespace
) -> LoadResult:
    stop_at = time.monotonic() + args.before + args.outage + args.after
    load = asyncio.create_task(
        run_load(
            url=url,
            headers=headers,
            concurrency=args.concurrency,
            until=lambda: time.monotonic() >= stop_at,
        )
    )
    await asyncio.sleep(args.before)
    say(f"cutting PostgreSQL off ({args.mode}) for {args.outage:g} s")
    await asyncio.to_thread(forwarder.cut, args.mode)
    await asyncio.sleep(args.outage)
    await asyncio.to_thread(forwarder.restore)
    say("PostgreSQL is back")
    return await load


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability.pg_outage")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="an administrative connection to the PostgreSQL server to use",
    )
    parser.add_argument("--database", default="gateway_pg_outage", help="scratch database name")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds without PostgreSQL")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mode", choices=["refuse", "hang"], default="refuse")
    parser.add_argument("--replay-timeout", type=float, default=120.0)
    parser.add_argument("--redis-url", default="", help="also run with this REDIS_URL")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args(argv)

    workdir = scratch_dir("gateway-pg-outage-")
    data_dir = workdir / "data"
    data_dir.mkdir()
    target = urlsplit(args.database_url)
    forwarder = Forwarder(target.hostname or "127.0.0.1", target.port or 5432).start()
    direct_url = database_url(args.database_url, args.database)
    overrides = {"DATABASE_URL": database_url(args.database_url, args.database, forwarder.port)}
    if args.redis_url:
        overrides["REDIS_URL"] = args.redis_url
    environment = gateway_environment(data_dir, **overrides)
    processes = []
    try:
        say(f"scratch database {args.database}, logs in {workdir}")
        database_recreate(args.database_url, args.database)
        manage(environment, "migrate", "--verbosity", "0")
        key = manage(environment, "create_access_key", "outage@example.com", "--create-user")
        access_key = key.strip().splitlines()[-1]
        fake, fake_url = start_fake(workdir, environment)
        processes.append(fake)
        environment["GATEWAY_ANTHROPIC_BASE_URL"] = fake_url
        gateway, gateway_url = start_gateway(workdir, environment)
        processes.append(gateway)
        url = f"{gateway_url}/ak/{access_key}/v1/messages"
        headers = {"x-api-key": "sk-ant-outage-run", "anthropic-version": "2023-06-01"}

        result = asyncio.run(_load_with_outage(url, headers, forwarder, args))
        say(
            f"load done: {result.answered} answers {dict(result.statuses)}, "
            f"transport errors {dict(result.transport_errors)}, "
            f"incomplete streams {result.incomplete_streams}"
        )
        say("waiting for the usage spool to be replayed")
        recorded = wait_recorded(direct_url, result.request_ids, data_dir, args.replay_timeout)
        counts = tally(result.request_ids, recorded)
        say(f"spool depth {spool_depth(data_dir)}, events doubled {counts.doubled}")
        if result.own_errors:
            say(f"5xx made by the gateway itself: {dict(result.own_errors)}")
        if not gateway.alive():
            say(f"the gateway died:\n{gateway.log_tail()}")
        if counts.lost_ids:
            lost = [f"{rid}: {result.details.get(rid, '?')}" for rid in counts.lost_ids]
            (workdir / "lost-request-ids.txt").write_text("\n".join(lost) + "\n")
            say(f"lost request ids (first 5 of {counts.lost}): {lost[:5]}")
        print(counts.line())  # noqa: T201 - the run's result line
        failed = counts.lost or counts.doubled or result.own_errors or not gateway.alive()
        return 1 if failed else 0
    finally:
        for process in reversed(processes):
            process.stop()
        forwarder.stop()
        if not args.keep:
            database_drop(args.database_url, args.database)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
