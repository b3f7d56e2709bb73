"""A real HTTP server on 127.0.0.1 that speaks Anthropic's and Bedrock's wire formats.

The gateway's end-to-end tests and benchmarks point `GATEWAY_ANTHROPIC_BASE_URL` and the Bedrock
endpoint at it. One server answers both upstreams:

- Anthropic: `POST /v1/messages` (JSON, or SSE when the body has `"stream": true`),
  `POST /v1/messages/count_tokens`, `GET /v1/models`.
- Bedrock: `POST /model/{id}/converse`, `/converse-stream`, `/invoke`,
  `/invoke-with-response-stream` (eventstream frames), `/count-tokens`.

It runs uvicorn with a raw ASGI app in a background thread (`FakeUpstream`, a context manager), or
in the foreground from the command line for benchmarks:

    python -m proxy.testing.fake_upstream --port 8999 --text-deltas 200 --delta-interval-ms 5

Tests script it (`answer`, `queue_answers`, `add_fault`, `set_default_fault`) and inspect it
(`requests`, connection and stream counters, client disconnects with timestamps). Pacing can also be
chosen per request, either with `x-fake-text-deltas` / `x-fake-delta-interval-ms` headers or with a
`[[fake text_deltas=N delta_interval_ms=D]]` marker anywhere in the prompt (the marker survives the
gateway's translation to Bedrock, headers may not).

What the answers contain is decided in `answers.py`; faults are described in `faults.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, unquote

import uvicorn

from proxy.testing import answers as answer_formats
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.eventstream import event_frame, exception_frame
from proxy.testing.faults import (
    UPSTREAMS,
    AnthropicStreamError,
    BedrockStreamException,
    DropConnection,
    Fault,
    FaultQueue,
    HttpError,
    StreamCut,
    anthropic_error_body,
    render_http_error,
)

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # httptools is optional in uvicorn; h11 always works
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]

Headers = list[tuple[str, str]]

BEDROCK_ACTIONS = frozenset(
    {"converse", "converse-stream", "invoke", "invoke-with-response-stream", "count-tokens"}
)
BEDROCK_STREAMING_ACTIONS = frozenset({"converse-stream", "invoke-with-response-stream"})
ANTHROPIC_ROUTES = {
    ("POST", "/v1/messages"): "messages",
    ("POST", "/v1/messages/count_tokens"): "count_tokens",
    ("GET", "/v1/models"): "models",
}
ANSWERING_ENDPOINTS = frozenset(
    {"messages", "converse", "converse-stream", "invoke", "invoke-with-response-stream"}
)

DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "type": "model",
        "id": "claude-sonnet-4-5-20250929",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-haiku-4-5-20251001",
        "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-01T00:00:00Z",
    },
    {
        "type": "model",
        "id": "claude-opus-4-1-20250805",
        "display_name": "Claude Opus 4.1",
        "created_at": "2025-08-05T00:00:00Z",
    },
]

PACING_HEADER_DELTAS = "x-fake-text-deltas"
PACING_HEADER_INTERVAL = "x-fake-delta-interval-ms"
_PACING_MARKER = re.compile(r"\[\[fake ([^\]]{0,200})\]\]")
_PACING_MARKER_BYTES = re.compile(rb"\[\[fake ([^\]]{0,200})\]\]")

# Bedrock pads every event payload with a random-length "p" key so sizes leak nothing.
_PADDING_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Longer than common client pools keep idle connections, so the fake never closes one a client is
# about to reuse (that race would show up as flaky connection errors in gateway tests).
KEEP_ALIVE_SECONDS = 75

OUTCOME_PENDING = "pending"
OUTCOME_COMPLETED = "completed"
OUTCOME_CLIENT_DISCONNECTED = "client_disconnected"
OUTCOME_SERVER_CLOSED = "server_closed"


@dataclass(frozen=True)
class Pacing:
    """How a stream is paced: text and thinking split into `text_deltas` deltas, and
    `delta_interval` seconds between consecutive delta events."""

    text_deltas: int = 4
    delta_interval: float = 0.0


@dataclass(frozen=True)
class Route:
    upstream: str
    endpoint: str
    model_id: str | None = None


def route_request(method: str, raw_path: str) -> Route | None:
    """Which upstream endpoint a request is for; Bedrock model ids are percent-decoded."""
    endpoint = ANTHROPIC_ROUTES.get((method, raw_path))
    if endpoint is not None:
        return Route("anthropic", endpoint)
    segments = raw_path.split("/")
    # "/model/{id}/{action}" splits into ["", "model", id, action].
    if (
        method == "POST"
        and len(segments) == 4
        and segments[1] == "model"
        and segments[2]
        and segments[3] in BEDROCK_ACTIONS
    ):
        return Route("bedrock", segments[3], unquote(segments[2]))
    return None


@dataclass(eq=False)
class RecordedRequest:
    """One request as the fake saw it, and what became of it.

    Times are `time.monotonic()` values. `outcome` is `pending`, `completed`,
    `client_disconnected` (the client went away before the response ended) or `server_closed`
    (a fault closed the connection).
    """

    upstream: str | None
    endpoint: str | None
    model_id: str | None
    method: str
    path: str
    raw_path: str
    query: str
    headers: Headers
    body: bytes
    client: tuple[str, int] | None
    started_at: float
    streaming: bool = False
    fault: Fault | None = None
    status: int | None = None
    events_sent: int = 0
    finished_at: float | None = None
    client_disconnected_at: float | None = None
    outcome: str = OUTCOME_PENDING

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitively."""
        wanted = name.lower()
        for header_name, value in self.headers:
            if header_name == wanted:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def abandoned(self) -> bool:
        """The client disconnected before the response was complete."""
        return self.client_disconnected_at is not None


class _Exchange:
    """Server-side state of one request in flight (lives on the event loop)."""

    __slots__ = ("closed", "record", "transport", "_waiters")

    def __init__(self, record: RecordedRequest, transport: asyncio.BaseTransport | None) -> None:
        self.record = record
        self.transport = transport
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    def wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake as soon as `wake()` is called (disconnect or shutdown)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sse_event(event_type: str, data: Any) -> bytes:
    """One SSE frame as Anthropic writes it."""
    return b"event: " + event_type.encode("ascii") + b"\ndata: " + _json_bytes(data) + b"\n\n"


def _padded(payload: dict[str, Any]) -> bytes:
    length = 1 + secrets.randbelow(len(_PADDING_ALPHABET))
    return _json_bytes({**payload, "p": _PADDING_ALPHABET[:length]})


def _parse_pacing_options(text: str, pacing: Pacing) -> Pacing:
    for option in text.split():
        name, _, value = option.partition("=")
        if name == "text_deltas":
            pacing = replace(pacing, text_deltas=_positive_int(value, name))
        elif name == "delta_interval_ms":
            pacing = replace(pacing, delta_interval=_non_negative_ms(value, name))
        else:
            raise ValueError(f"unknown pacing option {name!r}")
    return pacing


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1")
    return number


def _non_negative_ms(value: str, name: str) -> float:
    try:
        milliseconds = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of milliseconds, got {value!r}") from None
    if not milliseconds >= 0:
        raise ValueError(f"{name} must be >= 0")
    return milliseconds / 1000


class FakeUpstream:
    """The fake Anthropic + Bedrock server. Use as a context manager or with start()/stop().

    `record=False` keeps no request history (for long benchmark runs); counters still work.
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
        self.host = host
        self.port = port
        self.record = record
        self.default_pacing = Pacing(
            text_deltas=_positive_int(str(text_deltas), "text_deltas"),
            delta_interval=_non_negative_ms(str(delta_interval_ms), "delta_interval_ms"),
        )
        self.faults: dict[str, FaultQueue] = {
            upstream: FaultQueue(upstream) for upstream in UPSTREAMS
        }
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None
        self._stopping = False
        # Connection bookkeeping, keyed by the client's (host, port); touched on the event loop.
        self._transports: dict[tuple[str, int], asyncio.BaseTransport] = {}
        self._active: dict[tuple[str, int], _Exchange] = {}
        self._answers_lock = threading.Lock()
        self._reset_script()
        self._reset_observations()
        self.connections_open = 0

    # --- scripting (called from tests) ------------------------------------------------------------

    def _reset_script(self) -> None:
        self.answer: ScriptedAnswer | None = None
        self._answer_queue: deque[ScriptedAnswer] = deque()
        self.pacing = self.default_pacing
        self.count_tokens_result: int | None = None
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.extra_headers: dict[str, dict[str, str]] = {upstream: {} for upstream in UPSTREAMS}
        for queue in self.faults.values():
            queue.clear()

    def _reset_observations(self) -> None:
        self._requests: list[RecordedRequest] = []
        self.connections_opened = 0
        self.requests_in_flight = 0
        self.streams_in_flight = 0
        self.max_streams_in_flight = 0

    def reset(self) -> None:
        """Forget scripts, faults and history (live connection counts stay as they are)."""
        with self._answers_lock:
            self._reset_script()
        self._reset_observations()
        self.max_streams_in_flight = self.streams_in_flight

    def queue_answers(self, *answers: ScriptedAnswer) -> None:
        """Answers used one per answering request, before `answer` / the default answer."""
        with self._answers_lock:
            self._answer_queue.extend(answers)

    def add_fault(self, upstream: str, *faults: Fault) -> None:
        """Queue faults (FIFO) for "anthropic" or "bedrock"."""
        self._queue_for(upstream).push(*faults)

    def set_default_fault(self, upstream: str, fault: Fault | None) -> None:
        """The fault applied whenever the upstream's queue has no match (None: answer normally)."""
        self._queue_for(upstream).set_default(fault)

    def _queue_for(self, upstream: str) -> FaultQueue:
        if upstream not in self.faults:
            raise ValueError(f"unknown upstream {upstream!r}; expected one of {UPSTREAMS}")
        return self.faults[upstream]

    # --- observations ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._requests)

    def requests_to(
        self, upstream: str | None = None, endpoint: str | None = None
    ) -> list[RecordedRequest]:
        return [
            request
            for request in self.requests
            if (upstream is None or request.upstream == upstream)
            and (endpoint is None or request.endpoint == endpoint)
        ]

    @property
    def last_request(self) -> RecordedRequest:
        if not self._requests:
            raise LookupError("the fake upstream has received no request")
        return self._requests[-1]

    @property
    def abandoned_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.abandoned]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `predicate()` holds; re-checked whenever the fake's state changes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake upstream: condition not met within {timeout}s")
                self._changed.wait(remaining)

    async def wait_until_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """`wait_until` for async tests: waits in a worker thread, so the loop keeps running."""
        await asyncio.to_thread(self.wait_until, predicate, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        self.wait_until(lambda: len(self._requests) >= count, timeout)
        return self.requests

    def wait_for_disconnect(self, timeout: float = 5.0) -> RecordedRequest:
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
        if self._server is None:
            raise RuntimeError("the fake upstream is not started")
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> FakeUpstream:
        """Serve in a background thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake upstream is already started")
        listener = self._bind()
        self._server = uvicorn.Server(self._config())
        self._stopping = False
        self._thread = threading.Thread(
            target=self._serve_in_thread, args=(listener,), name="fake-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake upstream did not start") from self._thread_error
            time.sleep(0.002)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: in-flight streams end at once, connections are closed."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._begin_stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None
        self._server = None

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM; used by the command line."""
        listener = self._bind()
        self._server = uvicorn.Server(self._config())
        if on_ready is not None:
            on_ready(self.base_url)
        self._server.run(sockets=[listener])

    def _bind(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(2048)
        self.port = listener.getsockname()[1]
        return listener

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self,
            http=self._protocol_class(),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=1,
            backlog=2048,
        )

    def _protocol_class(self) -> type[asyncio.Protocol]:
        fake = self

        class CountingProtocol(_BaseProtocol):
            """uvicorn's HTTP protocol, reporting connection open/close to the fake."""

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                if self.client is not None:
                    fake._connection_made(self.client, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.client is not None:
                    fake._connection_lost(self.client)
                super().connection_lost(exc)

        return CountingProtocol

    def _serve_in_thread(self, listener: socket.socket) -> None:
        assert self._server is not None
        loop = _new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._server.serve(sockets=[listener]))
        except BaseException as error:  # reported by start(); a thread cannot raise to its owner
            self._thread_error = error
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            listener.close()

    def _begin_stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
            # Do not wait for keep-alive connections or streams: tests want a prompt stop.
            self._server.force_exit = True
        for exchange in list(self._active.values()):
            exchange.wake()
        for transport in list(self._transports.values()):
            transport.close()

    # --- connection accounting (event loop) ------------------------------------------------------

    def _connection_made(self, client: tuple[str, int], transport: asyncio.BaseTransport) -> None:
        self._transports[client] = transport
        self.connections_open += 1
        self.connections_opened += 1
        self._notify()

    def _connection_lost(self, client: tuple[str, int]) -> None:
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
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        raw_path_text = raw_path.decode("latin-1")
        route = route_request(scope["method"], raw_path_text)
        peer = scope.get("client")
        client: tuple[str, int] | None = (peer[0], peer[1]) if peer else None
        record = RecordedRequest(
            upstream=route.upstream if route else None,
            endpoint=route.endpoint if route else None,
            model_id=route.model_id if route else None,
            method=scope["method"],
            path=scope["path"],
            raw_path=raw_path_text,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in scope["headers"]
            ],
            body=bytes(body),
            client=client,
            started_at=time.monotonic(),
        )
        exchange = _Exchange(record, self._transports.get(client) if client else None)
        if client is not None:
            self._active[client] = exchange
        if self.record:
            self._requests.append(record)
        self.requests_in_flight += 1
        self._notify()
        try:
            await self._handle(exchange, route, send)
        finally:
            if client is not None and self._active.get(client) is exchange:
                del self._active[client]
            self.requests_in_flight -= 1
            record.finished_at = time.monotonic()
            if record.outcome == OUTCOME_PENDING:
                record.outcome = OUTCOME_COMPLETED
            self._notify()

    async def _handle(self, exchange: _Exchange, route: Route | None, send: Any) -> None:
        record = exchange.record
        if route is None:
            body = anthropic_error_body(
                error_type="not_found_error",
                message=f"fake upstream: no route for {record.method} {record.raw_path}",
                request_id=self._request_id("anthropic"),
            )
            await self._respond(exchange, send, 404, [("content-type", "application/json")], body)
            return
        parsed: Any = None
        parse_error = ""
        if record.body:
            try:
                parsed = json.loads(record.body)
            except ValueError as error:
                parse_error = f"request body is not JSON: {error}"
        record.streaming = route.endpoint in BEDROCK_STREAMING_ACTIONS or (
            route.endpoint == "messages"
            and isinstance(parsed, dict)
            and parsed.get("stream") is True
        )
        fault = self.faults[route.upstream].take(
            endpoint=route.endpoint, streaming=record.streaming
        )
        record.fault = fault
        if fault is not None and fault.delay > 0 and not await self._pause(exchange, fault.delay):
            return
        if isinstance(fault, DropConnection):
            await self._close_connection(exchange)
            return
        if isinstance(fault, HttpError):
            await self._send_error(exchange, send, route.upstream, fault)
            return
        if parse_error or (route.endpoint != "models" and not isinstance(parsed, dict)):
            message = parse_error or "request body must be a JSON object"
            await self._send_error(
                exchange, send, route.upstream, HttpError(status=400, message=message)
            )
            return
        try:
            pacing = self._pacing_for(record)
        except ValueError as error:
            await self._send_error(
                exchange, send, route.upstream, HttpError(status=400, message=str(error))
            )
            return
        await self._answer(exchange, send, route, parsed, pacing, fault)

    async def _answer(
        self,
        exchange: _Exchange,
        send: Any,
        route: Route,
        parsed: Any,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        record = exchange.record
        upstream, endpoint = route.upstream, route.endpoint
        if endpoint == "models":
            await self._send_json(exchange, send, upstream, self._models_page(record.query))
            return
        if endpoint in ("count_tokens", "count-tokens"):
            tokens = self.count_tokens_result
            if tokens is None:
                tokens = max(1, len(record.body) // 4)
            key = "input_tokens" if endpoint == "count_tokens" else "inputTokens"
            await self._send_json(exchange, send, upstream, {key: tokens})
            return
        answer = self._next_answer(parsed, pacing, len(record.body))
        latency_ms = max(1, int((time.monotonic() - record.started_at) * 1000))
        if endpoint == "messages":
            model = str(parsed.get("model") or "claude-fake")
            message_id = self._message_id("msg_")
            if not record.streaming:
                message = answer_formats.anthropic_message(
                    answer, model=model, message_id=message_id
                )
                await self._send_json(exchange, send, upstream, message)
                return
            events = answer_formats.anthropic_stream_events(
                answer, model=model, message_id=message_id, text_deltas=pacing.text_deltas
            )
            frames = [
                (sse_event(name, data), name == "content_block_delta") for name, data in events
            ]
            await self._stream(exchange, send, upstream, frames, pacing, fault, sse=True)
            return
        model_id = route.model_id or ""
        requested_paths = parsed.get("additionalModelResponseFieldPaths")
        if endpoint == "converse":
            response = answer_formats.converse_response(
                answer, latency_ms=latency_ms, requested_paths=requested_paths
            )
            await self._send_json(exchange, send, upstream, response)
        elif endpoint == "converse-stream":
            events = answer_formats.converse_stream_events(
                answer,
                text_deltas=pacing.text_deltas,
                latency_ms=latency_ms,
                requested_paths=requested_paths,
            )
            frames = [
                (event_frame(name, _padded(data)), name == "contentBlockDelta")
                for name, data in events
            ]
            await self._stream(exchange, send, upstream, frames, pacing, fault, sse=False)
        elif endpoint == "invoke":
            message = answer_formats.anthropic_message(
                answer, model=model_id, message_id=self._message_id("msg_bdrk_")
            )
            usage = answer.full_usage()
            headers = [
                ("x-amzn-bedrock-input-token-count", str(usage["input_tokens"])),
                ("x-amzn-bedrock-output-token-count", str(usage["output_tokens"])),
                ("x-amzn-bedrock-invocation-latency", str(latency_ms)),
            ]
            await self._send_json(exchange, send, upstream, message, headers)
        else:  # invoke-with-response-stream
            events = answer_formats.invoke_stream_events(
                answer,
                model=model_id,
                message_id=self._message_id("msg_bdrk_"),
                text_deltas=pacing.text_deltas,
                latency_ms=latency_ms,
            )
            frames = [
                (
                    event_frame(
                        "chunk",
                        _padded({"bytes": base64.b64encode(_json_bytes(data)).decode("ascii")}),
                    ),
                    name == "content_block_delta",
                )
                for name, data in events
            ]
            await self._stream(exchange, send, upstream, frames, pacing, fault, sse=False)

    # --- answers and pacing ----------------------------------------------------------------------

    def _next_answer(
        self, parsed: dict[str, Any], pacing: Pacing, body_size: int
    ) -> ScriptedAnswer:
        with self._answers_lock:
            if self._answer_queue:
                return self._answer_queue.popleft()
            if self.answer is not None:
                return self.answer
        prompt = _PACING_MARKER.sub("", answer_formats.last_user_text(parsed))
        return answer_formats.default_answer(
            prompt=prompt, words=pacing.text_deltas, input_tokens=body_size // 4
        )

    def _pacing_for(self, record: RecordedRequest) -> Pacing:
        pacing = self.pacing
        deltas = record.header(PACING_HEADER_DELTAS)
        if deltas is not None:
            pacing = replace(pacing, text_deltas=_positive_int(deltas, PACING_HEADER_DELTAS))
        interval = record.header(PACING_HEADER_INTERVAL)
        if interval is not None:
            pacing = replace(
                pacing, delta_interval=_non_negative_ms(interval, PACING_HEADER_INTERVAL)
            )
        marker = _PACING_MARKER_BYTES.search(record.body)
        if marker is not None:
            pacing = _parse_pacing_options(marker.group(1).decode("utf-8", "replace"), pacing)
        return pacing

    def _models_page(self, query: str) -> dict[str, Any]:
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        limit = max(1, min(1000, int(params.get("limit", "20") or 20)))
        ids = [model["id"] for model in self.models]
        models = self.models
        if "after_id" in params and params["after_id"] in ids:
            models = models[ids.index(params["after_id"]) + 1 :]
            page, has_more = models[:limit], len(models) > limit
        elif "before_id" in params and params["before_id"] in ids:
            models = models[: ids.index(params["before_id"])]
            page, has_more = models[-limit:], len(models) > limit
        else:
            page, has_more = models[:limit], len(models) > limit
        return {
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    def _request_id(self, upstream: str) -> str:
        if upstream == "bedrock":
            return str(uuid.uuid4())
        return f"req_fake{next(self._ids):016x}"

    def _message_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):016x}"

    # --- writing responses -----------------------------------------------------------------------

    def _base_headers(self, upstream: str, content_type: str) -> Headers:
        request_id = self._request_id(upstream)
        id_header = "request-id" if upstream == "anthropic" else "x-amzn-RequestId"
        headers = [("content-type", content_type), (id_header, request_id)]
        headers.extend(self.extra_headers.get(upstream, {}).items())
        return headers

    async def _send_json(
        self,
        exchange: _Exchange,
        send: Any,
        upstream: str,
        data: Any,
        headers: Headers | None = None,
    ) -> None:
        all_headers = self._base_headers(upstream, "application/json") + (headers or [])
        await self._respond(exchange, send, 200, all_headers, _json_bytes(data))

    async def _send_error(
        self, exchange: _Exchange, send: Any, upstream: str, fault: HttpError
    ) -> None:
        body, headers = render_http_error(
            fault, upstream=upstream, request_id=self._request_id(upstream)
        )
        extra = list(self.extra_headers.get(upstream, {}).items())
        await self._respond(exchange, send, fault.status, extra + headers, body)

    async def _respond(
        self, exchange: _Exchange, send: Any, status: int, headers: Headers, body: bytes
    ) -> None:
        if exchange.closed:
            return
        exchange.record.status = status
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        encoded.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _stream(
        self,
        exchange: _Exchange,
        send: Any,
        upstream: str,
        frames: Sequence[tuple[bytes, bool]],
        pacing: Pacing,
        fault: Fault | None,
        *,
        sse: bool,
    ) -> None:
        """Write frames as a chunked body, pacing delta frames, applying a mid-stream fault."""
        if exchange.closed:
            return
        record = exchange.record
        if sse:
            headers = self._base_headers(upstream, "text/event-stream; charset=utf-8")
            headers.append(("cache-control", "no-cache"))
        else:
            headers = self._base_headers(upstream, "application/vnd.amazon.eventstream")
            if record.endpoint == "invoke-with-response-stream":
                headers.append(("x-amzn-bedrock-content-type", "application/json"))
        fault_at = -1
        if isinstance(fault, StreamCut | AnthropicStreamError | BedrockStreamException):
            fault_at = min(fault.after_events, len(frames))
        record.status = 200
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        await send({"type": "http.response.start", "status": 200, "headers": encoded})
        self.streams_in_flight += 1
        self.max_streams_in_flight = max(self.max_streams_in_flight, self.streams_in_flight)
        delta_seen = False
        try:
            for position, (frame, is_delta) in enumerate(frames):
                if position == fault_at:
                    await self._stream_fault(exchange, send, fault)
                    return
                paced = is_delta and delta_seen and pacing.delta_interval > 0
                if paced and not await self._pause(exchange, pacing.delta_interval):
                    return
                delta_seen = delta_seen or is_delta
                if exchange.closed:
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                record.events_sent += 1
            if fault_at == len(frames):
                await self._stream_fault(exchange, send, fault)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.streams_in_flight -= 1

    async def _stream_fault(self, exchange: _Exchange, send: Any, fault: Fault | None) -> None:
        if isinstance(fault, StreamCut):
            await self._close_connection(exchange)
            return
        if isinstance(fault, AnthropicStreamError):
            error = {
                "type": "error",
                "error": {"type": fault.error_type, "message": fault.message},
                "request_id": self._request_id("anthropic"),
            }
            final = sse_event("error", error)
        elif isinstance(fault, BedrockStreamException):
            final = exception_frame(fault.exception_type, _json_bytes(fault.payload()))
        else:
            raise TypeError(f"not a mid-stream fault: {fault!r}")
        await send({"type": "http.response.body", "body": final, "more_body": False})

    async def _pause(self, exchange: _Exchange, seconds: float) -> bool:
        """Wait; False if the connection went away (or the server is stopping) meanwhile."""
        if not exchange.closed and not self._stopping:
            await exchange.sleep(seconds)
        if exchange.closed:
            return False
        if self._stopping:
            await self._close_connection(exchange)
            return False
        return True

    async def _close_connection(self, exchange: _Exchange) -> None:
        """Close the connection from the server side, whatever was sent so far."""
        if exchange.record.outcome == OUTCOME_PENDING:
            exchange.record.outcome = OUTCOME_SERVER_CLOSED
        if exchange.closed or exchange.transport is None:
            return
        exchange.transport.close()
        # Return only once uvicorn knows the connection is gone, so it does not report the
        # unfinished response as an application error.
        while not exchange.closed:
            await exchange.sleep(1.0)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.testing.fake_upstream",
        description="Fake Anthropic + Bedrock upstream for benchmarks (answers without scripting).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--text-deltas", type=int, default=4, help="text deltas per text block")
    parser.add_argument(
        "--delta-interval-ms", type=float, default=0.0, help="pause between delta events"
    )
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    args = parser.parse_args(argv)
    try:
        fake = FakeUpstream(
            host=args.host,
            port=args.port,
            text_deltas=args.text_deltas,
            delta_interval_ms=args.delta_interval_ms,
            record=args.record,
        )
    except ValueError as error:
        parser.error(str(error))

    def announce(url: str) -> None:
        # The first stdout line is the base URL, so a benchmark can start the fake on port 0.
        sys.stdout.write(url + "\n")
        sys.stdout.flush()

    fake.serve_forever(on_ready=announce)


if __name__ == "__main__":
    main()
