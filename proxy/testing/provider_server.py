"""What the fake OpenAI, Gemini and Ollama upstreams share: one base class, `ProviderFake`.

A provider fake is a real HTTP server on 127.0.0.1 (uvicorn through `server.UvicornRunner`, a
background thread or the foreground). The base class does everything that does not depend on the
wire format: scripting (`answer`, `queue_answers`, one fault queue from `faults.py`, pacing, extra
headers, accepted and rejected keys), request records with the credential masked but hashed,
connection and stream gauges, waits, the request life cycle (route, authenticate, parse, validate,
fault, answer) and response writing through `exchange.Exchange`. A subclass says how requests are
routed, where the key is, how a body is validated, how errors look, and what the answer is.

Order of checks for each request, as a real API does it: route (404), credential (401 or the
provider's equivalent), JSON body (400), strict validation (400, and the record keeps the reasons
in `validation_errors`), then the scripted fault, then the answer. Invalid requests never take a
queued fault, so a test's faults are used by the requests they were meant for.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from proxy.testing.answers import ScriptedAnswer, default_answer
from proxy.testing.exchange import Exchange, Frames, StreamFault, json_bytes
from proxy.testing.faults import (
    DropConnection,
    Fault,
    FaultQueue,
    HttpError,
    ProviderStreamError,
    StreamCut,
)
from proxy.testing.records import (
    OUTCOME_CLIENT_DISCONNECTED,
    OUTCOME_COMPLETED,
    OUTCOME_PENDING,
    PACING_MARKER,
    Headers,
    Pacing,
    RecordedRequest,
    pacing_for,
)
from proxy.testing.server import Client, UvicornRunner


@dataclass(frozen=True)
class ProviderRoute:
    """Which endpoint a request is for; `model` when the path names one (Gemini)."""

    endpoint: str
    model: str | None = None


@dataclass(eq=False)
class ProviderRequest(RecordedRequest):
    """A `RecordedRequest` with what the provider fakes add.

    `headers` and `query` hold the credential masked (`***` and the first 12 hex digits of its
    SHA-256); `key_sha256` is the full hash of the credential the request carried (None without
    one), so a test can assert which upstream key was used without the key in any record.
    `parsed` is the JSON body (None if absent or not JSON); `validation_errors` lists why the real
    API would have rejected it (empty for a valid request).
    """

    key_sha256: str | None = None
    parsed: Any = None
    validation_errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.validation_errors


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def masked(key: str) -> str:
    return f"***{key_sha256(key)[:12]}"


class ProviderFake:
    """Base of the provider fakes. Use as a context manager or with start()/stop().

    Subclasses set `upstream` (the fault queue's name) and implement `route`, `credential`,
    `validate`, `is_streaming`, `error_body`, `stream_error_bytes` and `answer_request`.
    `accepted_keys=None` accepts any non-empty key; `rejected_keys` (settable between tests) are
    refused as invalid even then. `key_required` (the class's `requires_key` after each reset) can
    be turned off for a keyless server, such as a local OpenAI-compatible one.
    `record=False` keeps no request history (long benchmarks).
    """

    upstream: ClassVar[str]
    requires_key: ClassVar[bool] = True
    # Header names whose values are credentials, masked in records.
    secret_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    secret_query_params: ClassVar[frozenset[str]] = frozenset()
    request_id_header: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        text_deltas: int = 4,
        delta_interval_ms: float = 0.0,
        record: bool = True,
        accepted_keys: Collection[str] | None = None,
    ) -> None:
        self.record = record
        self.default_pacing = Pacing.build(
            text_deltas=text_deltas, delta_interval_ms=delta_interval_ms
        )
        self.default_accepted_keys = None if accepted_keys is None else frozenset(accepted_keys)
        self.faults = FaultQueue(self.upstream)
        self._runner = UvicornRunner(app=self, hooks=self, host=host, port=port)
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
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
        self.accepted_keys: frozenset[str] | None = self.default_accepted_keys
        self.key_required = self.requires_key
        self.rejected_keys: set[str] = set()
        self.extra_headers: dict[str, str] = {}
        self.faults.clear()

    def _reset_history(self) -> None:
        self._requests: list[ProviderRequest] = []
        self.connections_opened = 0
        self.max_streams_in_flight = self.streams_in_flight

    def reset(self) -> None:
        """Forget scripts, faults, key lists, pacing changes and history; gauges stay live."""
        with self._answers_lock:
            self._reset_script()
        self._reset_history()

    def queue_answers(self, *answers: ScriptedAnswer) -> None:
        """Answers used one per answering request, before `answer` or the default answer."""
        with self._answers_lock:
            self._answer_queue.extend(answers)

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults (FIFO); each is taken by the next valid request it matches."""
        self.faults.push(*faults)

    def set_default_fault(self, fault: Fault | None) -> None:
        """The fault applied whenever the queue has no match (None: answer normally)."""
        self.faults.set_default(fault)

    # --- observations ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[ProviderRequest]:
        return list(self._requests)

    def requests_to(self, endpoint: str) -> list[ProviderRequest]:
        return [request for request in self.requests if request.endpoint == endpoint]

    @property
    def last_request(self) -> ProviderRequest:
        if not self._requests:
            raise LookupError(f"the fake {self.upstream} upstream has received no request")
        return self._requests[-1]

    @property
    def invalid_requests(self) -> list[ProviderRequest]:
        return [request for request in self.requests if request.validation_errors]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `predicate()` holds; re-checked whenever the fake's state changes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake {self.upstream}: condition not met within {timeout}s")
                self._changed.wait(remaining)

    async def wait_until_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.wait_until, predicate, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[ProviderRequest]:
        self.wait_until(lambda: len(self._requests) >= count, timeout)
        return self.requests

    def wait_for_disconnect(self, timeout: float = 5.0) -> ProviderRequest:
        """The first request whose client went away before its response ended."""
        self.wait_until(lambda: any(request.abandoned for request in self._requests), timeout)
        return next(request for request in self.requests if request.abandoned)

    def wait_idle(self, timeout: float = 5.0) -> None:
        self.wait_until(lambda: self.requests_in_flight == 0, timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._runner.running:
            raise RuntimeError(f"the fake {self.upstream} upstream is not started")
        return f"http://{self._runner.host}:{self._runner.port}"

    def start(self) -> Self:
        """Serve from a background thread; returns once connections are accepted."""
        self._stopping = False
        self._runner.start_in_thread()
        return self

    def stop(self) -> None:
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

    # --- what subclasses define ------------------------------------------------------------------

    def route(self, method: str, path: str) -> ProviderRoute | None:
        raise NotImplementedError

    def credential(self, record: ProviderRequest) -> str | None:
        """The key the request carries (None: none)."""
        raise NotImplementedError

    def validate(self, route: ProviderRoute, body: Any) -> list[str]:
        """Why the real API would reject this body ([] if it would not)."""
        raise NotImplementedError

    def is_streaming(self, route: ProviderRoute, body: Any) -> bool:
        raise NotImplementedError

    def error_body(self, fault: HttpError) -> bytes:
        """The provider's error JSON for an HTTP error."""
        raise NotImplementedError

    def auth_error(self, key: str | None) -> HttpError:
        """The error for a missing (None) or refused key."""
        raise NotImplementedError

    def validation_error(self, problems: list[str]) -> HttpError:
        """The 400 for a body the real API would refuse."""
        return HttpError(status=400, message="; ".join(problems))

    def stream_error_bytes(self, fault: ProviderStreamError, record: ProviderRequest) -> bytes:
        """The provider's in-stream error, encoded as the request's stream encodes events."""
        raise NotImplementedError

    async def answer_request(
        self,
        exchange: Exchange,
        route: ProviderRoute,
        body: Any,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        raise NotImplementedError

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
        peer = scope.get("client")
        client: Client | None = (peer[0], peer[1]) if peer else None
        route = self.route(scope["method"], scope["path"])
        record = ProviderRequest(
            upstream=self.upstream,
            endpoint=route.endpoint if route else None,
            model_id=route.model if route else None,
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
        key = self.credential(record)
        self._mask_secrets(record, key)
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
            await self._handle(exchange, route, key)
        finally:
            if client is not None and self._active.get(client) is exchange:
                del self._active[client]
            self.requests_in_flight -= 1
            record.finished_at = time.monotonic()
            if record.outcome == OUTCOME_PENDING:
                record.outcome = OUTCOME_COMPLETED
            self._notify()

    def _mask_secrets(self, record: ProviderRequest, key: str | None) -> None:
        if key:
            record.key_sha256 = key_sha256(key)
        record.headers = [
            (name, _mask_value(value) if name in self.secret_headers else value)
            for name, value in record.headers
        ]
        if self.secret_query_params and record.query:
            pairs = []
            for pair in record.query.split("&"):
                name, separator, value = pair.partition("=")
                if name in self.secret_query_params and value:
                    value = masked(value)
                pairs.append(name + separator + value)
            record.query = "&".join(pairs)

    def _key_refused(self, key: str | None) -> bool:
        if not key:
            return True
        if key in self.rejected_keys:
            return True
        return self.accepted_keys is not None and key not in self.accepted_keys

    async def _handle(
        self, exchange: Exchange, route: ProviderRoute | None, key: str | None
    ) -> None:
        record = exchange.record
        assert isinstance(record, ProviderRequest)
        if route is None:
            message = f"fake {self.upstream}: no route for {record.method} {record.path}"
            await self.send_error(exchange, HttpError(status=404, message=message))
            return
        if (self.key_required or key) and self._key_refused(key):
            await self.send_error(exchange, self.auth_error(key))
            return
        body: Any = None
        if record.method == "POST":
            try:
                body = json.loads(record.body) if record.body else None
            except ValueError as error:
                message = f"We could not parse the JSON body of your request: {error}"
                await self.send_error(exchange, HttpError(status=400, message=message))
                return
            record.parsed = body
            if not isinstance(body, dict):
                record.validation_errors = ["(body): the request body must be a JSON object"]
            else:
                record.validation_errors = self.validate(route, body)
            if record.validation_errors:
                await self.send_error(exchange, self.validation_error(record.validation_errors))
                return
        record.streaming = self.is_streaming(route, body)
        fault = self.faults.take(endpoint=route.endpoint, streaming=record.streaming)
        record.fault = fault
        if fault is not None and fault.delay > 0 and not await exchange.pause(fault.delay):
            return
        if isinstance(fault, DropConnection):
            await exchange.close_connection()
            return
        if isinstance(fault, HttpError):
            await self.send_error(exchange, fault)
            return
        try:
            pacing = pacing_for(record, self.pacing)
        except ValueError as error:
            await self.send_error(exchange, HttpError(status=400, message=str(error)))
            return
        await self.answer_request(exchange, route, body, pacing, fault)

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

    # --- writing responses -----------------------------------------------------------------------

    def base_headers(self, content_type: str) -> Headers:
        headers = [("content-type", content_type)]
        if self.request_id_header:
            headers.append((self.request_id_header, f"req_fake{self.next_id():016x}"))
        headers.extend(self.extra_headers.items())
        return headers

    async def send_json(
        self, exchange: Exchange, data: Any, headers: Headers | None = None
    ) -> None:
        all_headers = self.base_headers("application/json") + (headers or [])
        await exchange.respond(200, all_headers, json_bytes(data))

    async def send_error(self, exchange: Exchange, fault: HttpError) -> None:
        body = fault.body if fault.body is not None else self.error_body(fault)
        headers = self.base_headers("application/json")
        lowered = {name.lower() for name in fault.headers}
        headers = [(name, value) for name, value in headers if name.lower() not in lowered]
        headers.extend(fault.headers.items())
        await exchange.respond(fault.status, headers, body)

    async def send_stream(
        self,
        exchange: Exchange,
        frames: Frames,
        *,
        content_type: str,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        headers = self.base_headers(content_type)
        headers.append(("cache-control", "no-cache"))
        self.streams_in_flight += 1
        self.max_streams_in_flight = max(self.max_streams_in_flight, self.streams_in_flight)
        try:
            await exchange.stream(
                headers,
                frames,
                delta_interval=pacing.delta_interval,
                fault=self._stream_fault(fault, exchange.record),  # type: ignore[arg-type]
            )
        finally:
            self.streams_in_flight -= 1

    def _stream_fault(self, fault: Fault | None, record: ProviderRequest) -> StreamFault | None:
        if isinstance(fault, StreamCut):
            return (fault.after_events, None)
        if isinstance(fault, ProviderStreamError):
            return (fault.after_events, self.stream_error_bytes(fault, record))
        return None


def _mask_value(value: str) -> str:
    """`Bearer sk-...` -> `Bearer ***<hash>`; a bare key -> `***<hash>`."""
    scheme, separator, secret = value.partition(" ")
    if separator and secret:
        return f"{scheme} {masked(secret)}"
    return masked(value) if value else value


def sse_data(data: Any) -> bytes:
    """One `data:` SSE frame, as OpenAI and Gemini write them."""
    return b"data: " + json_bytes(data) + b"\n\n"


def ndjson_line(data: Any) -> bytes:
    return json_bytes(data) + b"\n"


# --- command line -------------------------------------------------------------------------------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every provider fake takes."""
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
