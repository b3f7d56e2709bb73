"""A real HTTP server on 127.0.0.1 that speaks OpenAI's API (and so any OpenAI-compatible one).

Endpoints: `POST /v1/chat/completions` (JSON, or SSE `data:` chunks ending with `data: [DONE]`
when `"stream": true`; a final `choices: []` usage chunk only with
`stream_options.include_usage`), `POST /v1/completions` (legacy `text_completion`, streamed too),
`POST /v1/embeddings` (floats, or base64 float32 with `encoding_format: base64`; deterministic
vectors; `dimensions` honoured), `GET /v1/models`.

Every request needs `Authorization: Bearer <key>` (any non-empty key unless `accepted_keys` is
given; `rejected_keys` refuses chosen ones; `fail_key` makes a chosen key answer with an error of
choice, e.g. a 429 or `insufficient_quota`) and every body is validated strictly
(`validation/openai_rules.py`): what the real API would refuse gets its 400 and the record keeps
the reasons. Answers are built through openai-python's response models (`provider_answers.py`).
Errors have OpenAI's shape `{"error": {"message", "type", "param", "code"}}`; an error inside a
stream is a `data: {"error": ...}` frame.

    python -m proxy.testing.fake_openai --port 8998 --text-deltas 200 --delta-interval-ms 5

Scripting, faults and records are those of `provider_server.ProviderFake`; `reasoning_field`
(e.g. `"reasoning_content"`) makes thinking blocks come out the way some OpenAI-compatible servers
send them, and `allowed_extra_keys` lets such a server accept its own top-level parameters.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection, Sequence
from typing import Any

from proxy.testing import provider_answers as render
from proxy.testing.base import serve_command_line, server_options
from proxy.testing.exchange import Exchange, json_bytes
from proxy.testing.faults import Fault, HttpError, ProviderStreamError
from proxy.testing.provider_server import (
    ProviderFake,
    ProviderRequest,
    ProviderRoute,
    masked,
    sse_data,
)
from proxy.testing.records import Pacing
from proxy.testing.validation import openai_rules

ROUTES = {
    ("POST", "/v1/chat/completions"): "chat_completions",
    ("POST", "/v1/completions"): "completions",
    ("POST", "/v1/embeddings"): "embeddings",
    ("GET", "/v1/models"): "models",
}
VALIDATORS = {
    "chat_completions": openai_rules.validate_chat_completion,
    "completions": openai_rules.validate_text_completion,
    "embeddings": openai_rules.validate_embeddings,
}

DEFAULT_MODELS: list[dict[str, Any]] = [
    {"id": "gpt-4o", "created": 1715367049, "owned_by": "system"},
    {"id": "gpt-4o-mini", "created": 1721172741, "owned_by": "system"},
    {"id": "gpt-3.5-turbo-instruct", "created": 1692901427, "owned_by": "system"},
    {"id": "text-embedding-3-small", "created": 1705948997, "owned_by": "system"},
    {"id": "text-embedding-3-large", "created": 1705953180, "owned_by": "system"},
]
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_EMBEDDING_DIMENSIONS = 1536

# The error `type` OpenAI sends with each status (`code` where it always sends one).
ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
STREAM_DONE = b"data: [DONE]\n\n"


def openai_error(
    *, message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def insufficient_quota(**kwargs: Any) -> HttpError:
    """OpenAI's 429 for an account out of credit (not worth retrying, unlike a rate limit)."""
    return HttpError(
        status=429,
        error_type="insufficient_quota",
        code="insufficient_quota",
        message=("You exceeded your current quota, please check your plan and billing details."),
        **kwargs,
    )


def invalid_key(**kwargs: Any) -> HttpError:
    """OpenAI's 401 for a key it does not know (or one that was revoked)."""
    return HttpError(
        status=401,
        error_type="invalid_request_error",
        code="invalid_api_key",
        message="Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        **kwargs,
    )


def rate_limited(*, retry_after: float = 1, **kwargs: Any) -> HttpError:
    """OpenAI's 429 rate limit, with `retry-after` (seconds) as it sends it."""
    headers = {"retry-after": str(retry_after), **kwargs.pop("headers", {})}
    return HttpError(
        status=429,
        error_type="requests",
        code="rate_limit_exceeded",
        message="Rate limit reached for requests. Please try again in 1s.",
        headers=headers,
        **kwargs,
    )


class FakeOpenAI(ProviderFake):
    """The fake OpenAI (or generic OpenAI-compatible) upstream."""

    upstream = "openai"
    request_id_header = "x-request-id"
    routes = ROUTES
    validators = VALIDATORS

    def __init__(
        self,
        *,
        reasoning_field: str | None = None,
        allowed_extra_keys: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        self.reasoning_field = reasoning_field
        self.allowed_extra_keys = frozenset(allowed_extra_keys)
        super().__init__(**kwargs)

    def _reset_script(self) -> None:
        super()._reset_script()
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.embedding_dimensions: dict[str, int] = dict(EMBEDDING_DIMENSIONS)

    # --- the ProviderFake hooks ------------------------------------------------------------------

    def credential(self, record: ProviderRequest) -> str | None:
        authorization = record.header("authorization") or ""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return key.strip() or None

    def auth_error(self, key: str | None) -> HttpError:
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return HttpError(status=401, error_type="invalid_request_error", message=message)
        message = (
            f"Incorrect API key provided: {masked(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return HttpError(
            status=401, error_type="invalid_request_error", code="invalid_api_key", message=message
        )

    def validate(self, route: ProviderRoute, body: Any) -> list[str]:
        if self.allowed_extra_keys:
            body = {key: value for key, value in body.items() if key not in self.allowed_extra_keys}
        return super().validate(route, body)

    def validation_error(self, problems: list[str]) -> HttpError:
        # OpenAI names the offending parameter in `param` (the path of the first problem here).
        param, _, _ = problems[0].partition(": ")
        body = openai_error(
            message="; ".join(problems),
            error_type="invalid_request_error",
            param=None if param.startswith("(") else param,
        )
        return HttpError(status=400, body=json_bytes(body))

    def is_streaming(self, route: ProviderRoute, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def error_body(self, fault: HttpError) -> bytes:
        default_type, default_code = ERROR_TYPES.get(fault.status, ("server_error", None))
        error_type = fault.error_type or default_type
        return json_bytes(
            openai_error(
                message=fault.message or f"Fake OpenAI {error_type}",
                error_type=error_type,
                code=fault.code if fault.code is not None else default_code,
            )
        )

    def stream_error_bytes(self, fault: ProviderStreamError, record: ProviderRequest) -> bytes:
        default_type, default_code = ERROR_TYPES.get(fault.status, ("server_error", None))
        return sse_data(
            openai_error(
                message=fault.message,
                error_type=fault.error_type or default_type,
                code=fault.code if fault.code is not None else default_code,
            )
        )

    async def answer_request(
        self,
        exchange: Exchange,
        route: ProviderRoute,
        body: Any,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        endpoint = route.endpoint
        if endpoint == "models":
            await self.send_json(exchange, render.openai_models_page(self.models))
        elif endpoint == "embeddings":
            await self._answer_embeddings(exchange, body)
        elif endpoint == "chat_completions":
            await self._answer_chat(exchange, body, pacing, fault)
        else:
            await self._answer_completion(exchange, body, pacing, fault)

    # --- endpoints -------------------------------------------------------------------------------

    def _identity(self, prefix: str) -> tuple[str, int]:
        return f"{prefix}-fake{self.next_id():016x}", int(time.time())

    async def _answer_chat(
        self, exchange: Exchange, body: dict[str, Any], pacing: Pacing, fault: Fault | None
    ) -> None:
        answer = self.next_answer(
            render.openai_prompt_text(body), pacing, len(exchange.record.body)
        )
        completion_id, created = self._identity("chatcmpl")
        model = str(body["model"])
        choices = body.get("n") or 1
        if not exchange.record.streaming:
            completion = render.openai_chat_completion(
                answer,
                model=model,
                completion_id=completion_id,
                created=created,
                choices=choices,
                reasoning_field=self.reasoning_field,
            )
            await self.send_json(exchange, completion)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = render.openai_chat_chunks(
            answer,
            model=model,
            completion_id=completion_id,
            created=created,
            text_deltas=pacing.text_deltas,
            include_usage=include_usage,
            choices=choices,
            reasoning_field=self.reasoning_field,
        )
        await self._stream_chunks(exchange, chunks, pacing, fault)

    async def _answer_completion(
        self, exchange: Exchange, body: dict[str, Any], pacing: Pacing, fault: Fault | None
    ) -> None:
        answer = self.next_answer(
            render.openai_prompt_text(body), pacing, len(exchange.record.body)
        )
        completion_id, created = self._identity("cmpl")
        model = str(body["model"])
        if not exchange.record.streaming:
            completion = render.openai_text_completion(
                answer,
                model=model,
                completion_id=completion_id,
                created=created,
                choices=body.get("n") or 1,
            )
            await self.send_json(exchange, completion)
            return
        chunks = render.openai_text_completion_chunks(
            answer,
            model=model,
            completion_id=completion_id,
            created=created,
            text_deltas=pacing.text_deltas,
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )
        await self._stream_chunks(exchange, chunks, pacing, fault)

    async def _stream_chunks(
        self, exchange: Exchange, chunks: list[dict[str, Any]], pacing: Pacing, fault: Fault | None
    ) -> None:
        frames = [(sse_data(chunk), position > 0) for position, chunk in enumerate(chunks)]
        frames.append((STREAM_DONE, False))
        await self.send_stream(
            exchange,
            frames,
            content_type="text/event-stream; charset=utf-8",
            pacing=pacing,
            fault=fault,
        )

    async def _answer_embeddings(self, exchange: Exchange, body: dict[str, Any]) -> None:
        model = str(body["model"])
        dimensions = body.get("dimensions") or self.embedding_dimensions.get(
            model, DEFAULT_EMBEDDING_DIMENSIONS
        )
        page = render.openai_embeddings(
            openai_rules.embedding_inputs(body["input"]),
            model=model,
            dimensions=dimensions,
            encoding_format=body.get("encoding_format") or "float",
        )
        await self.send_json(exchange, page)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.testing.fake_openai",
        description="Fake OpenAI upstream for benchmarks (answers without scripting).",
    )
    parser.add_argument(
        "--reasoning-field", default=None, help="e.g. reasoning_content, for thinking blocks"
    )
    serve_command_line(
        parser,
        argv,
        lambda args: FakeOpenAI(reasoning_field=args.reasoning_field, **server_options(args)),
    )


if __name__ == "__main__":
    main()
