"""What the fake OpenAI, Gemini and Ollama upstreams share: one base class, `ProviderFake`.

A provider fake is a real HTTP server on 127.0.0.1, a `base.FakeServer` (life cycle, gauges,
history, waits and answers shared with the Anthropic + Bedrock fake). The base class does
everything else that does not depend on the wire format: scripting (one fault queue from
`faults.py`, extra headers, accepted and rejected keys, per-key faults), request records with the
credential masked but hashed, the request life cycle (route, key fault, authenticate, parse,
validate, fault, answer) and response writing through `exchange.Exchange`. A subclass says how
requests are routed, where the key is, how a body is validated, how errors look, and what the
answer is.

Order of checks for each request, as a real API does it: route (404), a `fail_key` fault for the
request's key, credential (401 or the provider's equivalent), JSON body (400), strict validation
(400, and the record keeps the reasons in `validation_errors`), then the scripted fault, then the
answer. Invalid requests never take a queued fault, so a test's faults are used by the requests
they were meant for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from proxy.testing.base import FakeServer, Handler
from proxy.testing.exchange import Exchange, Frames, StreamFault, json_bytes
from proxy.testing.faults import (
    Fault,
    FaultQueue,
    HttpError,
    ProviderStreamError,
    StreamCut,
)
from proxy.testing.records import (
    Headers,
    Pacing,
    RecordedRequest,
    pacing_for,
)


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


class ProviderFake(FakeServer[ProviderRequest]):
    """Base of the provider fakes. Use as a context manager or with start()/stop().

    Subclasses set `upstream` (the fault queue's name), `routes` and `validators` (or override
    `route` and `validate`) and implement `credential`, `is_streaming`, `error_body`,
    `stream_error_bytes` and `answer_request`.
    `accepted_keys=None` accepts any non-empty key; `rejected_keys` (settable between tests) are
    refused as invalid even then. `key_required` (the class's `requires_key` after each reset) can
    be turned off for a keyless server, such as a local OpenAI-compatible one. `fail_key` makes
    every request with a chosen key get a chosen error (how key pools are tested).
    Life cycle, gauges, history and waits are those of `base.FakeServer`.
    """

    upstream: ClassVar[str]
    requires_key: ClassVar[bool] = True
    # Header names whose values are credentials, masked in records.
    secret_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    secret_query_params: ClassVar[frozenset[str]] = frozenset()
    request_id_header: ClassVar[str | None] = None

    def __init__(self, *, accepted_keys: Collection[str] | None = None, **kwargs: Any) -> None:
        self.default_accepted_keys = None if accepted_keys is None else frozenset(accepted_keys)
        self.faults = FaultQueue(self.upstream)
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"fake {self.upstream} upstream"

    # --- scripting (called from tests) ------------------------------------------------------------

    def _reset_script(self) -> None:
        super()._reset_script()
        self.accepted_keys: frozenset[str] | None = self.default_accepted_keys
        self.key_required = self.requires_key
        self.rejected_keys: set[str] = set()
        # key -> the error every request with that key gets (a rate-limited key, one out of
        # quota, a revoked one), whatever else is scripted.
        self.key_faults: dict[str, HttpError] = {}
        self.extra_headers: dict[str, str] = {}
        self.faults.clear()

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults (FIFO); each is taken by the next valid request it matches."""
        self.faults.push(*faults)

    def set_default_fault(self, fault: Fault | None) -> None:
        """The fault applied whenever the queue has no match (None: answer normally)."""
        self.faults.set_default(fault)

    def fail_key(self, key: str, fault: HttpError | None) -> None:
        """Answer every routed request made with ``key`` with ``fault``, in the provider's error
        format unless the fault has a body (None: answer normally again)."""
        if fault is None:
            self.key_faults.pop(key, None)
        else:
            self.key_faults[key] = fault

    # --- observations ----------------------------------------------------------------------------

    def requests_to(self, endpoint: str) -> list[ProviderRequest]:
        return [request for request in self.requests if request.endpoint == endpoint]

    @property
    def invalid_requests(self) -> list[ProviderRequest]:
        return [request for request in self.requests if request.validation_errors]

    # --- requests --------------------------------------------------------------------------------

    def open_request(self, request: dict[str, Any]) -> tuple[ProviderRequest, Handler]:
        route = self.route(request["method"], request["path"])
        record = ProviderRequest(
            upstream=self.upstream,
            endpoint=route.endpoint if route else None,
            model_id=route.model if route else None,
            **request,
        )
        key = self.credential(record)
        self._mask_secrets(record, key)
        return record, lambda exchange: self._handle(exchange, route, key)

    # --- what subclasses define ------------------------------------------------------------------

    # (method, path without a trailing slash) -> endpoint, for the fakes a table routes.
    routes: ClassVar[Mapping[tuple[str, str], str]] = {}
    # endpoint -> why the real API would refuse a body, for the fakes a table validates.
    validators: ClassVar[Mapping[str, Callable[[Any], list[str]]]] = {}

    def route(self, method: str, path: str) -> ProviderRoute | None:
        endpoint = self.routes.get((method, path.rstrip("/")))
        return ProviderRoute(endpoint) if endpoint else None

    def credential(self, record: ProviderRequest) -> str | None:
        """The key the request carries (None: none)."""
        raise NotImplementedError

    def validate(self, route: ProviderRoute, body: Any) -> list[str]:
        """Why the real API would reject this body ([] if it would not)."""
        validator = self.validators.get(route.endpoint)
        return validator(body) if validator else []

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
        key_fault = self.key_faults.get(key or "")
        if key_fault is not None:
            # Before the key is checked: a pooled key that fails fails on every request.
            record.fault = key_fault
            await self.send_error(exchange, key_fault)
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
        if await self.answered_by_fault(
            exchange, fault, lambda error: self.send_error(exchange, error)
        ):
            return
        try:
            pacing = pacing_for(record, self.pacing)
        except ValueError as error:
            await self.send_error(exchange, HttpError(status=400, message=str(error)))
            return
        await self.answer_request(exchange, route, body, pacing, fault)

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
        stream_fault = self._stream_fault(fault, exchange.record)  # type: ignore[arg-type]
        await self.stream_frames(exchange, headers, frames, pacing=pacing, fault=stream_fault)

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
