"""The benchmark's fake upstream: proxy.testing's fake, plus an Anthropic status on request.

A request to the Anthropic side that carries ``x-bench-anthropic-status: 529`` is answered at
once with that status in Anthropic's error format; everything else goes to the fake as usual.
The gateway forwards client headers to Anthropic, so one fake and one gateway serve both the
normal scenarios and the fallback one (Anthropic overloaded, Bedrock Converse answers).

    python -m bench.proxy.fake --port 0 --text-deltas 64

prints the base URL on its first stdout line, like ``proxy.testing.fake_upstream``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError, render_http_error

STATUS_HEADER = b"x-bench-anthropic-status"


class BenchFakeUpstream(FakeUpstream):
    """Answers Anthropic requests that ask for it with an immediate error status."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            for name, value in scope["headers"]:
                if name == STATUS_HEADER:
                    await self._forced_status(int(value), receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _forced_status(self, status: int, receive: Any, send: Any) -> None:
        while True:  # drain the request body so the connection stays usable
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        body, headers = render_http_error(
            HttpError(status=status), upstream="anthropic", request_id="req_bench_forced"
        )
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text-deltas", type=int, default=64)
    parser.add_argument("--delta-interval-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = BenchFakeUpstream(
        host=args.host,
        port=args.port,
        text_deltas=args.text_deltas,
        delta_interval_ms=args.delta_interval_ms,
        record=False,
    )

    def announce(url: str) -> None:
        sys.stdout.write(url + "\n")
        sys.stdout.flush()

    fake.serve_forever(on_ready=announce)


if __name__ == "__main__":
    main()
