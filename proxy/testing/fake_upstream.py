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
`records.py`, response writing in `exchange.py`; what it shares with the provider fakes (life
cycle, gauges, history, the ASGI entry point) in `base.py`, on the uvicorn runner of `server.py`.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from proxy.testing import answers as answer_formats
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.base import FakeServer, Handler, serve_command_line, server_options
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
    Fault,
    FaultQueue,
    HttpError,
    StreamCut,
    anthropic_error_body,
    render_http_error,
)
from proxy.testing.records import (
    BEDROCK_STREAMING_ACTIONS,
    Headers,
    Pacing,
    RecordedRequest,
    Route,
    pacing_for,
    positive_int,
    route_request,
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


class FakeUpstream(FakeServer[RecordedRequest]):
    """The fake Anthropic + Bedrock server. Use as a context manager or with start()/stop().

    Gauges, history, waits and the life cycle are `base.FakeServer`'s; this class routes
    requests to Anthropic's and Bedrock's endpoints and answers in their formats.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.faults: dict[str, FaultQueue] = {name: FaultQueue(name) for name in UPSTREAMS}
        super().__init__(**kwargs)

    # --- scripting (called from tests) ------------------------------------------------------------

    def _reset_script(self) -> None:
        super()._reset_script()
        self.count_tokens_result: int | None = None
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.extra_headers: dict[str, dict[str, str]] = {name: {} for name in UPSTREAMS}
        for queue in self.faults.values():
            queue.clear()

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

    def requests_to(
        self, upstream: str | None = None, endpoint: str | None = None
    ) -> list[RecordedRequest]:
        return [
            request
            for request in self.requests
            if (upstream is None or request.upstream == upstream)
            and (endpoint is None or request.endpoint == endpoint)
        ]

    # --- requests --------------------------------------------------------------------------------

    def open_request(self, request: dict[str, Any]) -> tuple[RecordedRequest, Handler]:
        route = route_request(request["method"], request["raw_path"])
        record = RecordedRequest(
            upstream=route.upstream if route else None,
            endpoint=route.endpoint if route else None,
            model_id=route.model_id if route else None,
            **request,
        )
        return record, lambda exchange: self._handle(exchange, route)

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
        if await self.answered_by_fault(
            exchange, fault, lambda error: self._send_error(exchange, upstream, error)
        ):
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
            prompt = answer_formats.last_user_text(parsed)
            answer = self.next_answer(prompt, pacing, len(record.body))
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

    def _request_id(self, upstream: str) -> str:
        if upstream == "bedrock":
            return str(uuid.uuid4())
        return f"req_fake{self.next_id():016x}"

    def _message_id(self, prefix: str) -> str:
        return f"{prefix}fake{self.next_id():016x}"

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
        await self.stream_frames(
            exchange, headers, frames, pacing=pacing, fault=self._stream_fault(fault)
        )

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
    serve_command_line(parser, argv, lambda args: FakeUpstream(**server_options(args)))


if __name__ == "__main__":
    main()
