"""A real HTTP server on 127.0.0.1 that speaks Anthropic's and Bedrock's wire formats.

The gateway's end-to-end tests and benchmarks point `GATEWAY_ANTHROPIC_BASE_URL` and the Bedrock
endpoint at it. One server answers both upstreams:

- Anthropic: `POST /v1/messages` (JSON, or SSE when the body has `"stream": true`),
  `POST /v1/messages/count_tokens`, `GET /v1/models`.
- Bedrock: `POST /model/{id}/converse`, `/converse-stream`, `/invoke`,
  `/invoke-with-response-stream` (eventstream frames), `/count-tokens`.

`FakeUpstream` serves from a background thread (a context manager, or start()/stop()); the
command line serves in the foreground for benchmarks:

    python -m proxy.testing.fake_upstream --port 8999 --text-deltas 200 --delta-interval-ms 5

Tests script it (`answer`, `queue_answers`, `add_fault`, `set_default_fault`, `pacing`,
`count_tokens_result`, `models`, `extra_headers`) and inspect it (`requests`, connection and
stream gauges, client disconnects with timestamps, `wait_until`). With nothing scripted it answers
every request with a short text derived from the prompt. Stream pacing can also be chosen per
request with `x-fake-text-deltas` / `x-fake-delta-interval-ms` headers, or with a
`[[fake text_deltas=N delta_interval_ms=D]]` marker in the prompt (the marker survives the
gateway's translation to Bedrock; headers may not be forwarded).

What an answer contains is in `answers.py`, faults in `faults.py`, request records and pacing in
`records.py`, response writing in `exchange.py`, the uvicorn runner in `server.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from proxy.testing import answers as answer_formats
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.eventstream import exception_frame
from proxy.testing.exchange import (
    Exchange,
    Frames,
    StreamFault,
    converse_frames,
    invoke_frames,
    json_bytes,
    sse_event,
    sse_frames,
)
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
from proxy.testing.records import (
    BEDROCK_STREAMING_ACTIONS,
    OUTCOME_CLIENT_DISCONNECTED,
    OUTCOME_COMPLETED,
    OUTCOME_PENDING,
    PACING_MARKER,
    Headers,
    Pacing,
    RecordedRequest,
    Route,
    pacing_for,
    positive_int,
    route_request,
)
from proxy.testing.server import Client, UvicornRunner

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


class FakeUpstream:
    """The fake Anthropic + Bedrock server. Use as a context manager or with start()/stop().

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
        self.faults: dict[str, FaultQueue] = {name: FaultQueue(name) for name in UPSTREAMS}
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

    # --- scripting (called from tests) ------------------------------------------------------------

    def _reset_script(self) -> None:
        self.answer: ScriptedAnswer | None = None
        self._answer_queue: deque[ScriptedAnswer] = deque()
        self.pacing = self.default_pacing
        self.count_tokens_result: int | None = None
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.extra_headers: dict[str, dict[str, str]] = {name: {} for name in UPSTREAMS}
        for queue in self.faults.values():
            queue.clear()

    def _reset_history(self) -> None:
        self._requests: list[RecordedRequest] = []
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
        if not self._runner.running:
            raise RuntimeError("the fake upstream is not started")
        return f"http://{self._runner.host}:{self._runner.port}"

    def start(self) -> FakeUpstream:
        """Serve from a background thread; returns once connections are accepted."""
        self._stopping = False
        self._runner.start_in_thread()
        return self

    def stop(self) -> None:
        """Stop serving: streams in flight end at once, connections are closed."""
        self._runner.stop()

    def __enter__(self) -> FakeUpstream:
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
        raw_path = (scope.get("raw_path") or scope["path"].encode("utf-8")).decode("latin-1")
        route = route_request(scope["method"], raw_path)
        peer = scope.get("client")
        client: Client | None = (peer[0], peer[1]) if peer else None
        record = RecordedRequest(
            upstream=route.upstream if route else None,
            endpoint=route.endpoint if route else None,
            model_id=route.model_id if route else None,
            method=scope["method"],
            path=scope["path"],
            raw_path=raw_path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in scope["headers"]
            ],
            body=bytes(body),
            client=client,
            started_at=time.monotonic(),
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
            await self._handle(exchange, route)
        finally:
            if client is not None and self._active.get(client) is exchange:
                del self._active[client]
            self.requests_in_flight -= 1
            record.finished_at = time.monotonic()
            if record.outcome == OUTCOME_PENDING:
                record.outcome = OUTCOME_COMPLETED
            self._notify()

    async def _handle(self, exchange: Exchange, route: Route | None) -> None:
        record = exchange.record
        if route is None:
            body = anthropic_error_body(
                error_type="not_found_error",
                message=f"fake upstream: no route for {record.method} {record.raw_path}",
                request_id=self._request_id("anthropic"),
            )
            await exchange.respond(404, [("content-type", "application/json")], body)
            return
        upstream = route.upstream
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
        fault = self.faults[upstream].take(endpoint=route.endpoint, streaming=record.streaming)
        record.fault = fault
        if fault is not None and fault.delay > 0 and not await exchange.pause(fault.delay):
            return
        if isinstance(fault, DropConnection):
            await exchange.close_connection()
            return
        if isinstance(fault, HttpError):
            await self._send_error(exchange, upstream, fault)
            return
        if parse_error or (route.endpoint != "models" and not isinstance(parsed, dict)):
            message = parse_error or "request body must be a JSON object"
            await self._send_error(exchange, upstream, HttpError(status=400, message=message))
            return
        try:
            pacing = pacing_for(record, self.pacing)
        except ValueError as error:
            await self._send_error(exchange, upstream, HttpError(status=400, message=str(error)))
            return
        if route.endpoint == "models":
            await self._send_models(exchange)
        elif route.endpoint in ("count_tokens", "count-tokens"):
            tokens = self.count_tokens_result
            if tokens is None:
                tokens = max(1, len(record.body) // 4)
            key = "input_tokens" if route.endpoint == "count_tokens" else "inputTokens"
            await self._send_json(exchange, upstream, {key: tokens})
        else:
            answer = self._next_answer(parsed, pacing, len(record.body))
            await self._send_answer(exchange, route, parsed, answer, pacing, fault)

    async def _send_answer(
        self,
        exchange: Exchange,
        route: Route,
        parsed: dict[str, Any],
        answer: ScriptedAnswer,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        """The answer in the wire format of the endpoint."""
        endpoint = route.endpoint
        streaming = exchange.record.streaming
        latency_ms = max(1, int((time.monotonic() - exchange.record.started_at) * 1000))
        if endpoint == "messages":
            model = str(parsed.get("model") or "claude-fake")
            message_id = self._message_id("msg_")
            if streaming:
                events = answer_formats.anthropic_stream_events(
                    answer, model=model, message_id=message_id, text_deltas=pacing.text_deltas
                )
                await self._send_stream(exchange, "anthropic", sse_frames(events), pacing, fault)
            else:
                message = answer_formats.anthropic_message(
                    answer, model=model, message_id=message_id
                )
                await self._send_json(exchange, "anthropic", message)
            return
        model_id = route.model_id or ""
        requested_paths = parsed.get("additionalModelResponseFieldPaths")
        if endpoint == "converse":
            response = answer_formats.converse_response(
                answer, latency_ms=latency_ms, requested_paths=requested_paths
            )
            await self._send_json(exchange, "bedrock", response)
        elif endpoint == "converse-stream":
            events = answer_formats.converse_stream_events(
                answer,
                text_deltas=pacing.text_deltas,
                latency_ms=latency_ms,
                requested_paths=requested_paths,
            )
            await self._send_stream(exchange, "bedrock", converse_frames(events), pacing, fault)
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
            await self._send_json(exchange, "bedrock", message, headers)
        else:  # invoke-with-response-stream
            events = answer_formats.invoke_stream_events(
                answer,
                model=model_id,
                message_id=self._message_id("msg_bdrk_"),
                text_deltas=pacing.text_deltas,
                latency_ms=latency_ms,
            )
            await self._send_stream(exchange, "bedrock", invoke_frames(events), pacing, fault)

    # --- answers ---------------------------------------------------------------------------------

    def _next_answer(
        self, parsed: dict[str, Any], pacing: Pacing, body_size: int
    ) -> ScriptedAnswer:
        with self._answers_lock:
            if self._answer_queue:
                return self._answer_queue.popleft()
            if self.answer is not None:
                return self.answer
        prompt = PACING_MARKER.sub("", answer_formats.last_user_text(parsed))
        return answer_formats.default_answer(
            prompt=prompt, words=pacing.text_deltas, input_tokens=body_size // 4
        )

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
        self, exchange: Exchange, upstream: str, data: Any, headers: Headers | None = None
    ) -> None:
        all_headers = self._base_headers(upstream, "application/json") + (headers or [])
        await exchange.respond(200, all_headers, json_bytes(data))

    async def _send_error(self, exchange: Exchange, upstream: str, fault: HttpError) -> None:
        request_id = self._request_id(upstream)
        body, headers = render_http_error(fault, upstream=upstream, request_id=request_id)
        extra = list(self.extra_headers.get(upstream, {}).items())
        await exchange.respond(fault.status, extra + headers, body)

    async def _send_models(self, exchange: Exchange) -> None:
        params = {name: values[-1] for name, values in parse_qs(exchange.record.query).items()}
        try:
            limit = positive_int(params.get("limit", "20"), "limit")
        except ValueError as error:
            await self._send_error(exchange, "anthropic", HttpError(status=400, message=str(error)))
            return
        page = answer_formats.models_page(
            self.models,
            limit=min(limit, 1000),
            after_id=params.get("after_id"),
            before_id=params.get("before_id"),
        )
        await self._send_json(exchange, "anthropic", page)

    async def _send_stream(
        self,
        exchange: Exchange,
        upstream: str,
        frames: Frames,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        if upstream == "anthropic":
            headers = self._base_headers(upstream, "text/event-stream; charset=utf-8")
            headers.append(("cache-control", "no-cache"))
        else:
            headers = self._base_headers(upstream, "application/vnd.amazon.eventstream")
            if exchange.record.endpoint == "invoke-with-response-stream":
                headers.append(("x-amzn-bedrock-content-type", "application/json"))
        self.streams_in_flight += 1
        self.max_streams_in_flight = max(self.max_streams_in_flight, self.streams_in_flight)
        try:
            await exchange.stream(
                headers,
                frames,
                delta_interval=pacing.delta_interval,
                fault=self._stream_fault(fault),
            )
        finally:
            self.streams_in_flight -= 1

    def _stream_fault(self, fault: Fault | None) -> StreamFault | None:
        """Where a mid-stream fault strikes, and the bytes that end the stream (None: cut)."""
        if isinstance(fault, StreamCut):
            return (fault.after_events, None)
        if isinstance(fault, AnthropicStreamError):
            error = {
                "type": "error",
                "error": {"type": fault.error_type, "message": fault.message},
                "request_id": self._request_id("anthropic"),
            }
            return (fault.after_events, sse_event("error", error))
        if isinstance(fault, BedrockStreamException):
            payload = json_bytes(fault.payload())
            return (fault.after_events, exception_frame(fault.exception_type, payload))
        return None


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
