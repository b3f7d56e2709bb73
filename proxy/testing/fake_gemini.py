"""A real HTTP server on 127.0.0.1 that speaks the Gemini API (generativelanguage, v1beta).

Endpoints, under `/v1beta` (and `/v1`): `POST models/{model}:generateContent`,
`:streamGenerateContent` (with `?alt=sse` one SSE `data: <GenerateContentResponse>` per chunk and
no `[DONE]`; without it a JSON array streamed element by element, as the API does), `:countTokens`,
`:embedContent`, `:batchEmbedContents`, `GET models` and `GET models/{model}`.

The key comes in `x-goog-api-key` or `?key=` (both are masked in records, `key_sha256` keeps its
hash). As the real API: no key is a 403 PERMISSION_DENIED, a refused key a 400 INVALID_ARGUMENT
with reason `API_KEY_INVALID`; `fail_key` makes a chosen key, in either place, answer with an
error of choice (e.g. `resource_exhausted()`), as a pooled key out of quota would. Bodies are
validated strictly (`validation/gemini_rules.py`).
Answers are google-genai types dumped in camelCase; function calls carry no ids. When a request
turns thinking on (`generationConfig.thinkingConfig` with a non-zero budget, a level or
`includeThoughts`), every functionCall part of the answer carries a `thoughtSignature`, and a later
request whose history holds that call without that signature gets Gemini's 400, so a gateway's
signature round trip is tested. Errors are `{"error": {"code", "message", "status"}}`.

    python -m proxy.testing.fake_gemini --port 8997
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from proxy.testing import provider_answers as render
from proxy.testing.base import serve_command_line, server_options
from proxy.testing.exchange import Exchange, json_bytes
from proxy.testing.faults import Fault, HttpError, ProviderStreamError
from proxy.testing.provider_server import (
    ProviderFake,
    ProviderRequest,
    ProviderRoute,
)
from proxy.testing.records import Pacing
from proxy.testing.validation import gemini_rules

API_VERSIONS = ("v1beta", "v1")
ACTIONS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "stream_generate_content",
    "countTokens": "count_tokens",
    "embedContent": "embed_content",
    "batchEmbedContents": "batch_embed_contents",
}
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "models/gemini-2.5-flash",
        "display_name": "Gemini 2.5 Flash",
        "input_token_limit": 1048576,
        "output_token_limit": 65536,
        "supported_generation_methods": ["generateContent", "countTokens"],
        "thinking": True,
    },
    {
        "name": "models/gemini-2.5-pro",
        "display_name": "Gemini 2.5 Pro",
        "input_token_limit": 1048576,
        "output_token_limit": 65536,
        "supported_generation_methods": ["generateContent", "countTokens"],
        "thinking": True,
    },
    {
        "name": "models/gemini-embedding-001",
        "display_name": "Gemini Embedding 001",
        "input_token_limit": 2048,
        "output_token_limit": 1,
        "supported_generation_methods": ["embedContent", "countTextTokens"],
    },
]
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
DEFAULT_EMBEDDING_DIMENSIONS = 768
MISSING_SIGNATURE_MESSAGE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)


def google_error(status: int, message: str, google_status: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": google_status or GOOGLE_STATUSES.get(status, "UNKNOWN"),
        }
    }


def resource_exhausted(**kwargs: Any) -> HttpError:
    """Gemini's 429 (quota or rate limit)."""
    return HttpError(
        status=429,
        error_type="RESOURCE_EXHAUSTED",
        message=(
            "You exceeded your current quota, please check your plan and billing details. "
            "Please retry in 1s."
        ),
        **kwargs,
    )


def _thinking(body: dict[str, Any]) -> tuple[bool, bool]:
    """(thinking on, thought summaries wanted) for a generateContent body."""
    config = gemini_rules.field_value(body, "generationConfig") or {}
    thinking = gemini_rules.field_value(config, "thinkingConfig")
    if not isinstance(thinking, dict):
        return False, False
    include = gemini_rules.field_value(thinking, "includeThoughts") is True
    budget = gemini_rules.field_value(thinking, "thinkingBudget")
    level = gemini_rules.field_value(thinking, "thinkingLevel")
    enabled = include or level is not None or (budget is not None and budget != 0)
    return enabled, include and enabled


def _call_key(name: str, args: Any) -> str:
    return json.dumps([name, args or {}], sort_keys=True, separators=(",", ":"))


def _decoded(signature: Any) -> bytes | None:
    if not isinstance(signature, str):
        return None
    padded = signature.encode("ascii", "replace") + b"=" * (-len(signature) % 4)
    for alphabet in (b"+/", b"-_"):
        try:
            return base64.b64decode(padded, altchars=alphabet, validate=True)
        except (ValueError, binascii.Error):
            continue
    return None


class FakeGemini(ProviderFake):
    """The fake Gemini API upstream."""

    upstream = "gemini"
    secret_headers = frozenset({"x-goog-api-key", "authorization"})
    secret_query_params = frozenset({"key"})

    def _reset_script(self) -> None:
        super()._reset_script()
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.count_tokens_result: int | None = None
        self.embedding_dimensions: dict[str, int] = dict(EMBEDDING_DIMENSIONS)
        # The thoughtSignature issued for each function call (name and args), to be sent back.
        self.issued_signatures: dict[str, bytes] = {}

    # --- the ProviderFake hooks ------------------------------------------------------------------

    def route(self, method: str, path: str) -> ProviderRoute | None:
        version, _, rest = path.lstrip("/").partition("/")
        if version not in API_VERSIONS or not rest.startswith("models"):
            return None
        if method == "GET":
            if rest == "models":
                return ProviderRoute("list_models")
            if rest.startswith("models/") and ":" not in rest:
                return ProviderRoute("get_model", rest.removeprefix("models/"))
            return None
        model, _, action = rest.removeprefix("models/").rpartition(":")
        endpoint = ACTIONS.get(action)
        if method != "POST" or not model or endpoint is None:
            return None
        return ProviderRoute(endpoint, model)

    def credential(self, record: ProviderRequest) -> str | None:
        header = record.header("x-goog-api-key")
        if header:
            return header
        values = parse_qs(record.query).get("key")
        return values[-1] if values else None

    def auth_error(self, key: str | None) -> HttpError:
        if not key:
            return HttpError(
                status=403,
                message=(
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to call "
                    "this API."
                ),
            )
        body = google_error(400, "API key not valid. Please pass a valid API key.")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
        return HttpError(status=400, body=json_bytes(body))

    def validate(self, route: ProviderRoute, body: Any) -> list[str]:
        endpoint = route.endpoint
        if endpoint in ("generate_content", "stream_generate_content"):
            problems = gemini_rules.validate_generate_content(body)
            return problems or self._signature_problems(body)
        if endpoint == "count_tokens":
            return gemini_rules.validate_count_tokens(body)
        if endpoint == "embed_content":
            return gemini_rules.validate_embed_content(body)
        if endpoint == "batch_embed_contents":
            return gemini_rules.validate_batch_embed_contents(body, model=route.model or "")
        return []

    def _signature_problems(self, body: dict[str, Any]) -> list[str]:
        """Each function call this fake signed must come back with its signature."""
        if not self.issued_signatures:
            return []
        problems = []
        for position, content in enumerate(gemini_rules.field_value(body, "contents") or []):
            if content.get("role") != "model":
                continue
            for part in gemini_rules.parts_of(content):
                call = gemini_rules.field_value(part, "functionCall")
                if not isinstance(call, dict):
                    continue
                issued = self.issued_signatures.get(
                    _call_key(str(call.get("name")), call.get("args"))
                )
                if issued is None:
                    continue
                if _decoded(gemini_rules.field_value(part, "thoughtSignature")) != issued:
                    problems.append(
                        MISSING_SIGNATURE_MESSAGE.format(name=call.get("name"), position=position)
                    )
        return problems

    def is_streaming(self, route: ProviderRoute, body: Any) -> bool:
        return route.endpoint == "stream_generate_content"

    def error_body(self, fault: HttpError) -> bytes:
        return json_bytes(
            google_error(
                fault.status, fault.message or "Fake Gemini error", google_status=fault.error_type
            )
        )

    def stream_error_bytes(self, fault: ProviderStreamError, record: ProviderRequest) -> bytes:
        error = json_bytes(google_error(fault.status, fault.message, fault.error_type))
        if self._sse(record):
            return b"data: " + error + b"\r\n\r\n"
        return (b",\r\n" if fault.after_events > 0 else b"[") + error + b"]"

    @staticmethod
    def _sse(record: ProviderRequest) -> bool:
        return parse_qs(record.query).get("alt", [""])[-1] == "sse"

    async def answer_request(
        self,
        exchange: Exchange,
        route: ProviderRoute,
        body: Any,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        endpoint = route.endpoint
        model = route.model or ""
        if endpoint == "list_models":
            await self.send_json(exchange, render.gemini_models_page(self.models))
        elif endpoint == "get_model":
            await self._answer_model(exchange, model)
        elif endpoint == "count_tokens":
            total = self.count_tokens_result
            if total is None:
                total = max(1, len(exchange.record.body) // 4)
            await self.send_json(exchange, render.gemini_count_tokens(total))
        elif endpoint == "embed_content":
            embedding = self._embedding(body, model)
            await self.send_json(exchange, {"embedding": embedding})
        elif endpoint == "batch_embed_contents":
            embeddings = [self._embedding(request, model) for request in body["requests"]]
            await self.send_json(exchange, {"embeddings": embeddings})
        else:
            await self._answer_generate(exchange, route, body, pacing, fault)

    # --- endpoints -------------------------------------------------------------------------------

    async def _answer_model(self, exchange: Exchange, model: str) -> None:
        for candidate in self.models:
            if candidate["name"] == f"models/{model}":
                await self.send_json(exchange, render.gemini_models_page([candidate])["models"][0])
                return
        error = HttpError(status=404, message=f"models/{model} is not found for API version v1beta")
        await self.send_error(exchange, error)

    def _embedding(self, request: dict[str, Any], model: str) -> dict[str, Any]:
        text = " ".join(part["text"] for part in gemini_rules.parts_of(request["content"]))
        dimensions = gemini_rules.field_value(request, "outputDimensionality") or (
            self.embedding_dimensions.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
        )
        return render.gemini_embedding(text, model=model, dimensions=dimensions)

    def _signer(self, thinking: bool) -> render.Signer | None:
        if not thinking:
            return None

        def sign(block: dict[str, Any]) -> bytes:
            signature = f"fake-thought-signature-{self.next_id():08d}".encode("ascii")
            self.issued_signatures[_call_key(block["name"], block["input"])] = signature
            return signature

        return sign

    async def _answer_generate(
        self,
        exchange: Exchange,
        route: ProviderRoute,
        body: dict[str, Any],
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        record = exchange.record
        assert isinstance(record, ProviderRequest)
        answer = self.next_answer(render.gemini_prompt_text(body), pacing, len(record.body))
        thinking, include_thoughts = _thinking(body)
        response_id = f"fake{self.next_id():016x}"
        model = route.model or ""
        sign = self._signer(thinking)
        if not record.streaming:
            response = render.gemini_response(
                answer,
                model_version=model,
                response_id=response_id,
                include_thoughts=include_thoughts,
                sign=sign,
            )
            await self.send_json(exchange, response)
            return
        chunks = render.gemini_stream_responses(
            answer,
            model_version=model,
            response_id=response_id,
            include_thoughts=include_thoughts,
            text_deltas=pacing.text_deltas,
            sign=sign,
        )
        if self._sse(record):
            frames = [(b"data: " + json_bytes(chunk) + b"\r\n\r\n", True) for chunk in chunks]
            content_type = "text/event-stream"
        else:
            frames = [
                ((b"[" if position == 0 else b",\r\n") + json_bytes(chunk), True)
                for position, chunk in enumerate(chunks)
            ]
            frames.append((b"]", False))
            content_type = "application/json; charset=UTF-8"
        await self.send_stream(
            exchange, frames, content_type=content_type, pacing=pacing, fault=fault
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.testing.fake_gemini",
        description="Fake Gemini API upstream for benchmarks (answers without scripting).",
    )
    serve_command_line(parser, argv, lambda args: FakeGemini(**server_options(args)))


if __name__ == "__main__":
    main()
