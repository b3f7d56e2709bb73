"""A real HTTP server on 127.0.0.1 that speaks Ollama's native API.

Endpoints: `POST /api/chat` and `POST /api/generate` (NDJSON lines by default, since `stream`
defaults to true in Ollama; one JSON object with `"stream": false`), `POST /api/embed`,
`GET /api/tags`, and `GET /` ("Ollama is running"). No key, as a local Ollama; a bearer token
sent anyway (Ollama behind a proxy) is recorded hashed, and `fail_key` makes a chosen one answer
with an error of choice in Ollama's `{"error": "..."}` shape. Tool calls arrive
whole in one line with `arguments` as an object; the final line carries `done_reason`,
`prompt_eval_count` and `eval_count`. Thinking comes out in `message.thinking` when the request
sets `think`, or leaves it out for a model that can think (`THINKING_FAMILIES`): Ollama's
handlers turn thinking on by default for those.

Unlike the real server, which silently drops unknown fields, the fake validates every body against
the documented API (`validation/ollama_rules.py`) and answers 400 `{"error": "..."}` for what the
real one would ignore, so translator bugs show. An error inside a stream is an `{"error": "..."}`
line.

    python -m proxy.testing.fake_ollama --port 8996
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import Any

from proxy.testing import provider_answers as render
from proxy.testing.base import serve_command_line, server_options
from proxy.testing.exchange import Exchange, json_bytes
from proxy.testing.faults import Fault, HttpError, ProviderStreamError
from proxy.testing.provider_server import (
    ProviderFake,
    ProviderRequest,
    ProviderRoute,
    ndjson_line,
)
from proxy.testing.records import Pacing
from proxy.testing.validation import ollama_rules

ROUTES = {
    ("POST", "/api/chat"): "chat",
    ("POST", "/api/generate"): "generate",
    ("POST", "/api/embed"): "embed",
    ("GET", "/api/tags"): "tags",
    ("GET", ""): "root",
    ("HEAD", ""): "root",
}
VALIDATORS = {
    "chat": ollama_rules.validate_chat,
    "generate": ollama_rules.validate_generate,
    "embed": ollama_rules.validate_embed,
}
_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "8.0B",
    "quantization_level": "Q4_K_M",
}
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "llama3.1:latest",
        "model": "llama3.1:latest",
        "modified_at": "2025-06-01T10:00:00.000000000Z",
        "size": 4920753328,
        "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
        "details": _DETAILS,
    },
    {
        "name": "nomic-embed-text:latest",
        "model": "nomic-embed-text:latest",
        "modified_at": "2025-06-01T10:00:00.000000000Z",
        "size": 274302450,
        "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        "details": {**_DETAILS, "family": "nomic-bert", "families": ["nomic-bert"]},
    },
]
EMBEDDING_DIMENSIONS = {"nomic-embed-text": 768, "mxbai-embed-large": 1024}
DEFAULT_EMBEDDING_DIMENSIONS = 768
# Model families with Ollama's "thinking" capability: a request without `think` gets their
# reasoning, as Ollama sets `think` to true for such a model when the request does not say.
THINKING_FAMILIES = frozenset({"qwen3", "deepseek-r1", "gpt-oss", "magistral", "qwq"})


def thinks(body: dict[str, Any]) -> bool:
    """Whether the answer to a chat or generate body carries the model's reasoning."""
    think = body.get("think")
    if think is None:
        return str(body["model"]).partition(":")[0] in THINKING_FAMILIES
    return bool(think)


class FakeOllama(ProviderFake):
    """The fake Ollama upstream."""

    upstream = "ollama"
    requires_key = False
    routes = ROUTES
    validators = VALIDATORS

    def _reset_script(self) -> None:
        super()._reset_script()
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.embedding_dimensions: dict[str, int] = dict(EMBEDDING_DIMENSIONS)

    # --- the ProviderFake hooks ------------------------------------------------------------------

    def credential(self, record: ProviderRequest) -> str | None:
        # No key is needed; one sent anyway (a proxy in front of Ollama) is still hashed.
        authorization = record.header("authorization") or ""
        return authorization.partition(" ")[2] or None

    def auth_error(self, key: str | None) -> HttpError:
        return HttpError(status=401, message="unauthorized")

    def is_streaming(self, route: ProviderRoute, body: Any) -> bool:
        # Ollama streams unless told not to.
        if route.endpoint not in ("chat", "generate") or not isinstance(body, dict):
            return False
        return body.get("stream") is not False

    def error_body(self, fault: HttpError) -> bytes:
        return json_bytes({"error": fault.message or f"fake ollama error {fault.status}"})

    def stream_error_bytes(self, fault: ProviderStreamError, record: ProviderRequest) -> bytes:
        return ndjson_line({"error": fault.message})

    async def answer_request(
        self,
        exchange: Exchange,
        route: ProviderRoute,
        body: Any,
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        endpoint = route.endpoint
        if endpoint == "root":
            await exchange.respond(
                200, self.base_headers("text/plain; charset=utf-8"), b"Ollama is running"
            )
        elif endpoint == "tags":
            await self.send_json(exchange, {"models": self.models})
        elif endpoint == "embed":
            model = str(body["model"])
            inputs = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
            dimensions = body.get("dimensions") or self.embedding_dimensions.get(
                model.partition(":")[0], DEFAULT_EMBEDDING_DIMENSIONS
            )
            await self.send_json(
                exchange, render.ollama_embed_response(inputs, model=model, dimensions=dimensions)
            )
        else:
            await self._answer_generation(exchange, endpoint, body, pacing, fault)

    async def _answer_generation(
        self,
        exchange: Exchange,
        endpoint: str,
        body: dict[str, Any],
        pacing: Pacing,
        fault: Fault | None,
    ) -> None:
        record = exchange.record
        answer = self.next_answer(render.ollama_prompt_text(body), pacing, len(record.body))
        model = str(body["model"])
        created_at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        think = thinks(body)
        if not record.streaming:
            whole = (
                render.ollama_chat_response
                if endpoint == "chat"
                else render.ollama_generate_response
            )
            await self.send_json(
                exchange, whole(answer, model=model, created_at=created_at, think=think)
            )
            return
        lines = render.ollama_chat_lines if endpoint == "chat" else render.ollama_generate_lines
        frames = [
            (ndjson_line(line), True)
            for line in lines(
                answer,
                model=model,
                created_at=created_at,
                think=think,
                text_deltas=pacing.text_deltas,
            )
        ]
        await self.send_stream(
            exchange, frames, content_type="application/x-ndjson", pacing=pacing, fault=fault
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.testing.fake_ollama",
        description="Fake Ollama upstream for benchmarks (answers without scripting).",
    )
    serve_command_line(parser, argv, lambda args: FakeOllama(**server_options(args)))


if __name__ == "__main__":
    main()
