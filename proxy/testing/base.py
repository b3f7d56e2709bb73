"""What every fake upstream server shares, whatever wire format it speaks: `FakeServer`.

`FakeServer` is the plumbing of `fake_upstream.FakeUpstream` (Anthropic + Bedrock) and of
`provider_server.ProviderFake` (OpenAI, Gemini, Ollama): the uvicorn runner and its life cycle,
connection and stream gauges, the request history and the waits on it, the answer queue, the
ASGI entry point that reads a request and keeps its record up to date, and the command-line
options of the benchmark servers. A subclass says how a request is routed and recorded
(`open_request`) and what it is answered; nothing here knows a wire format.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Self, TypeVar

from proxy.testing.answers import ScriptedAnswer, default_answer
from proxy.testing.exchange import Exchange, Frames, StreamFault
from proxy.testing.faults import DropConnection, Fault, HttpError
from proxy.testing.records import (
    OUTCOME_CLIENT_DISCONNECTED,
    OUTCOME_COMPLETED,
    OUTCOME_PENDING,
    PACING_MARKER,
    Headers,
    Pacing,
    RecordedRequest,
)
from proxy.testing.server import Client, UvicornRunner

RecordT = TypeVar("RecordT", bound=RecordedRequest)
# Answers one request, once its record is made: the subclass's routing result is bound in it.
Handler = Callable[[Exchange], Awaitable[None]]


class FakeServer(Generic[RecordT]):
    """Base of the fake upstreams. Use as a context manager or with start()/stop().

    Gauges (`connections_open`, `requests_in_flight`, `streams_in_flight`) are live values;
    `connections_opened` and `max_streams_in_flight` count since the last `reset()`.
    `record=False` keeps no request history (for long benchmark runs).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        text_deltas: int = 4,
        delta_interval_ms: float = 0.0,
        record: bool = True,
    ) -> None:
        self.record = record
        self.default_pacing = Pacing.build(
            text_deltas=text_deltas, delta_interval_ms=delta_interval_ms
        )
        self._runner = UvicornRunner(app=self, hooks=self, host=host, port=port)
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        # Keyed by the client's (host, port); touched only on the event loop.
        self._transports: dict[Client, asyncio.BaseTransport] = {}
        self._active: dict[Client, Exchange] = {}
        self._answers_lock = threading.Lock()
        self.connections_open = 0
        self.requests_in_flight = 0
        self.streams_in_flight = 0
        self._reset_script()
        self._reset_history()

    # --- what subclasses define ------------------------------------------------------------------

    @property
    def label(self) -> str:
        """How errors and timeouts name this server."""
        return "fake upstream"

    def open_request(self, request: dict[str, Any]) -> tuple[RecordT, Handler]:
        """The record of a request just read (`request` holds the `RecordedRequest` fields
        every server fills the same way) and the coroutine that answers it."""
        raise NotImplementedError

    # --- scripting (called from tests) ------------------------------------------------------------

    def _reset_script(self) -> None:
        """What `reset` forgets; subclasses extend it with their own scripting state."""
        self.answer: ScriptedAnswer | None = None
        self._answer_queue: deque[ScriptedAnswer] = deque()
        self.pacing = self.default_pacing

    def _reset_history(self) -> None:
        self._requests: list[RecordT] = []
        self.connections_opened = 0
        self.max_streams_in_flight = self.streams_in_flight

    def reset(self) -> None:
        """Forget scripts, faults, pacing changes and history; live gauges are left alone."""
        with self._answers_lock:
            self._reset_script()
        self._reset_history()

    def queue_answers(self, *answers: ScriptedAnswer) -> None:
        """Answers used one per answering request, before `answer` or the default answer."""
        with self._answers_lock:
            self._answer_queue.extend(answers)

    # --- observations ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordT]:
        return list(self._requests)

    @property
    def last_request(self) -> RecordT:
        if not self._requests:
            raise LookupError(f"the {self.label} has received no request")
        return self._requests[-1]

    @property
    def abandoned_requests(self) -> list[RecordT]:
        return [request for request in self.requests if request.abandoned]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `predicate()` holds; re-checked whenever the fake's state changes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.label}: condition not met within {timeout}s")
                self._changed.wait(remaining)

    async def wait_until_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """`wait_until` for async tests: waits in a worker thread, so the loop keeps running."""
        await asyncio.to_thread(self.wait_until, predicate, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordT]:
        self.wait_until(lambda: len(self._requests) >= count, timeout)
        return self.requests

    def wait_for_disconnect(self, timeout: float = 5.0) -> RecordT:
        """The first request whose client went away before its response ended."""
        self.wait_until(lambda: any(request.abandoned for request in self._requests), timeout)
        return self.abandoned_requests[0]

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Until no request is being served."""
        self.wait_until(lambda: self.requests_in_flight == 0, timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._runner.running:
            raise RuntimeError(f"the {self.label} is not started")
        return f"http://{self._runner.host}:{self._runner.port}"

    def start(self) -> Self:
        """Serve from a background thread; returns once connections are accepted."""
        self._stopping = False
        self._runner.start_in_thread()
        return self

    def stop(self) -> None:
        """Stop serving: streams in flight end at once, connections are closed."""
        self._runner.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM; used by the command line."""
        self._runner.serve_forever(on_ready)

    # --- server hooks (event loop) ---------------------------------------------------------------

    def connection_made(self, client: Client, transport: asyncio.BaseTransport) -> None:
        self._transports[client] = transport
        self.connections_open += 1
        self.connections_opened += 1
        self._notify()

    def connection_lost(self, client: Client) -> None:
        self._transports.pop(client, None)
        self.connections_open -= 1
        exchange = self._active.get(client)
        if exchange is not None:
            exchange.closed = True
            record = exchange.record
            if record.outcome == OUTCOME_PENDING:
                record.client_disconnected_at = time.monotonic()
                record.outcome = OUTCOME_CLIENT_DISCONNECTED
            exchange.wake()
        self._notify()

    def stopping(self) -> None:
        self._stopping = True
        for exchange in list(self._active.values()):
            exchange.wake()
        for transport in list(self._transports.values()):
            transport.close()

    # --- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        peer = scope.get("client")
        client: Client | None = (peer[0], peer[1]) if peer else None
        record, handle = self.open_request(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": (scope.get("raw_path") or scope["path"].encode("utf-8")).decode(
                    "latin-1"
                ),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "headers": [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in scope["headers"]
                ],
                "body": bytes(body),
                "client": client,
                "started_at": time.monotonic(),
            }
        )
        exchange = Exchange(
            record=record,
            send=send,
            transport=self._transports.get(client) if client else None,
            is_stopping=lambda: self._stopping,
        )
        if client is not None:
            self._active[client] = exchange
        if self.record:
            self._requests.append(record)
        self.requests_in_flight += 1
        self._notify()
        try:
            await handle(exchange)
        finally:
            if client is not None and self._active.get(client) is exchange:
                del self._active[client]
            self.requests_in_flight -= 1
            record.finished_at = time.monotonic()
            if record.outcome == OUTCOME_PENDING:
                record.outcome = OUTCOME_COMPLETED
            self._notify()

    # --- answers ---------------------------------------------------------------------------------

    def next_answer(self, prompt: str, pacing: Pacing, body_size: int) -> ScriptedAnswer:
        """The queued answer, else `answer`, else a short text derived from the prompt."""
        with self._answers_lock:
            if self._answer_queue:
                return self._answer_queue.popleft()
            if self.answer is not None:
                return self.answer
        return default_answer(
            prompt=PACING_MARKER.sub("", prompt),
            words=pacing.text_deltas,
            input_tokens=body_size // 4,
        )

    def next_id(self) -> int:
        return next(self._ids)

    # --- faults and writing responses ------------------------------------------------------------

    async def answered_by_fault(
        self,
        exchange: Exchange,
        fault: Fault | None,
        send_error: Callable[[HttpError], Awaitable[None]],
    ) -> bool:
        """Play the part of `fault` that comes before an answer: its delay, then a dropped
        connection or an HTTP error (sent by `send_error`, in the upstream's format). True when
        the request needs nothing more (also when the client left during the delay)."""
        if fault is not None and fault.delay > 0 and not await exchange.pause(fault.delay):
            return True
        if isinstance(fault, DropConnection):
            await exchange.close_connection()
            return True
        if isinstance(fault, HttpError):
            await send_error(fault)
            return True
        return False

    async def stream_frames(
        self,
        exchange: Exchange,
        headers: Headers,
        frames: Frames,
        *,
        pacing: Pacing,
        fault: StreamFault | None,
    ) -> None:
        """Send a paced stream, counted in the stream gauges while it runs."""
        self.streams_in_flight += 1
        self.max_streams_in_flight = max(self.max_streams_in_flight, self.streams_in_flight)
        try:
            await exchange.stream(
                headers, frames, delta_interval=pacing.delta_interval, fault=fault
            )
        finally:
            self.streams_in_flight -= 1


# --- command line -------------------------------------------------------------------------------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every fake server takes."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--text-deltas", type=int, default=4, help="text pieces per stream")
    parser.add_argument(
        "--delta-interval-ms", type=float, default=0.0, help="pause between stream pieces"
    )
    parser.add_argument("--record", action="store_true", help="keep every request in memory")


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "text_deltas": args.text_deltas,
        "delta_interval_ms": args.delta_interval_ms,
        "record": args.record,
    }


def announce(url: str) -> None:
    # The first stdout line is the base URL, so a benchmark can start the fake on port 0.
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


def serve_command_line(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    build: Callable[[argparse.Namespace], FakeServer[Any]],
) -> None:
    """A fake's `main`: the shared options added to `parser`, the fake built from the parsed
    ones (a bad value is a usage error, exit status 2), then served in the foreground."""
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        fake = build(args)
    except ValueError as error:
        parser.error(str(error))
    fake.serve_forever(on_ready=announce)
