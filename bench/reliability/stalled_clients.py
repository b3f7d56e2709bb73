"""Clients that stop reading: the gateway's memory per stalled stream, whatever the answer size.

Starts the fake upstream and one gateway worker (SQLite, DEBUG off, as in production), opens N
streams whose clients never read (a 4 KiB receive buffer), waits, and prints the worker's RSS
before and after:

    .venv/bin/python -m bench.reliability.stalled_clients --streams 20 --text-deltas 40000

The gateway relays a stream only as fast as its client takes it (the server's flow control stops
the relay, which stops reading the upstream), so memory per stalled stream stays bounded however
long the answer is; GATEWAY_CLIENT_WRITE_TIMEOUT (set high here) then closes such streams.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

from bench.reliability.common import (
    gateway_environment,
    manage,
    say,
    scratch_dir,
    start_fake,
    start_gateway,
)


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:  # noqa: PTH123 - a procfs file
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--text-deltas", type=int, default=40_000, help="deltas per answer")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds the clients stall")
    args = parser.parse_args()

    work = scratch_dir("stalled-")
    environment = gateway_environment(work, GATEWAY_CLIENT_WRITE_TIMEOUT="600")
    manage(environment, "migrate", "--noinput")
    created = manage(environment, "create_access_key", "stall@example.com", "--create-user")
    key = created.strip().splitlines()[-1]
    fake, fake_url = start_fake(work, environment, "--text-deltas", str(args.text_deltas))
    environment["GATEWAY_ANTHROPIC_BASE_URL"] = fake_url
    gateway, url = start_gateway(work, environment)
    try:
        time.sleep(1)
        before = rss_mib(gateway.popen.pid)
        body = json.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 10,
                "stream": True,
                "messages": [{"role": "user", "content": "x " * 2000}],
            }
        ).encode()
        head = (
            f"POST /ak/{key}/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nx-api-key: sk-ant-bench\r\n"
            f"anthropic-version: 2023-06-01\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        host, port = url.removeprefix("http://").split(":")
        clients = []
        for _ in range(args.streams):
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect((host, int(port)))
            client.sendall(head + body)
            clients.append(client)
        time.sleep(args.wait)
        after = rss_mib(gateway.popen.pid)
        for client in clients:
            client.close()
        say(
            f"stalled streams {args.streams}, {args.text_deltas} deltas each: worker RSS "
            f"{before} MiB -> {after} MiB ({(after - before) / args.streams:.2f} MiB per stream)"
        )
    finally:
        gateway.stop()
        fake.stop()


if __name__ == "__main__":
    main()
