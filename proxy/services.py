"""The proxy's request flow: validate, try Anthropic, fall back to Bedrock, choose the error.

Views call ``proxy_messages``, ``proxy_count_tokens`` and ``proxy_models``; each returns the
client's response. See DESIGN.md "Request flow" for the order of things.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from accounts.keycache import KeyMetadata
from gateway_project.observability import NO_FALLBACK, UPSTREAM_ERRORS
from proxy.anthropic import AnthropicFailure, attempt_anthropic
from proxy.bedrock import (
    BedrockFailure,
    bedrock_http_error,
    bedrock_transport_error,
    call_bedrock,
)
from proxy.circuit import circuit_name, circuits
from proxy.context import (
    NO_FALLBACK_HEADER,
    SESSION_HEADER,
    ProxyContext,
    error_response,
    json_response,
    new_request_id,
)
from proxy.headers import asgi_request_headers, has_client_credential, upstream_request_headers
from proxy.http_client import upstream_client
from proxy.routing import BedrockTarget, NoFallback, bedrock_target, model_map
from proxy.translation.betas import bedrock_betas
from proxy.translation.converse import converse_count_tokens_body
from proxy.translation.errors import error_body
from proxy.translation.model_ids import quote_model_id, strip_geo_prefix

logger = logging.getLogger(__name__)

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODELS_PATH = "/v1/models"


class BadRequest(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def parse_body(body: bytes, *, require_max_tokens: bool) -> dict[str, Any]:
    """The request JSON, checked just enough to route it; Anthropic judges the rest."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            400, "invalid_request_error", f"The body is not valid JSON: {exc}"
        ) from exc
    except RecursionError as exc:
        raise BadRequest(400, "invalid_request_error", "The body is nested too deeply.") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "invalid_request_error", "The body must be a JSON object.")
    if not isinstance(data.get("model"), str) or not data["model"]:
        raise BadRequest(400, "invalid_request_error", "model: Field required")
    if not isinstance(data.get("messages"), list):
        raise BadRequest(400, "invalid_request_error", "messages: Field required")
    if require_max_tokens and "max_tokens" not in data:
        raise BadRequest(400, "invalid_request_error", "max_tokens: Field required")
    return data


def _client_headers(request: HttpRequest, metadata: KeyMetadata) -> tuple[dict[str, str], str]:
    """Headers for Anthropic, and the credential that identifies the circuit."""
    client = asgi_request_headers(request.META)
    headers = upstream_request_headers(client)
    if not has_client_credential(headers):
        anthropic = metadata.credentials.get("anthropic")
        if anthropic is not None and not anthropic.error:
            headers["x-api-key"] = anthropic.secret
    credential = headers.get("x-api-key") or headers.get("authorization") or ""
    return headers, credential


def _with_reason(response: HttpResponse, no_fallback: NoFallback | None) -> HttpResponse:
    if no_fallback is not None:
        response[NO_FALLBACK_HEADER] = no_fallback.reason
    return response


def _no_answer_error(failure: AnthropicFailure) -> tuple[int, str, str]:
    if failure.reason in ("first_byte_timeout", "connect_timeout"):
        return 504, "timeout_error", "Anthropic did not answer in time."
    return 529, "overloaded_error", "Anthropic could not be reached."


def _anthropic_failed(
    failure: AnthropicFailure,
    context: ProxyContext,
    *,
    no_fallback: NoFallback | None = None,
    bedrock_failure: BedrockFailure | None = None,
) -> HttpResponse:
    """Answer with the more useful error: Anthropic's own reply when there was one (Claude Code
    reads its type, wording and retry-after), else Bedrock's mapped error, else our own."""
    response = failure.as_response()
    provider = "anthropic"
    if response is None and bedrock_failure is not None:
        error = bedrock_failure.error
        response = json_response(error.body, status=error.status, headers=error.headers)
        provider = "bedrock"
    if response is None:
        status, error_type, message = _no_answer_error(failure)
        response = error_response(status, error_type, message)
    if bedrock_failure is not None:
        response["x-gateway-fallback-error"] = (
            f"{bedrock_failure.error.status} {bedrock_failure.error.error_type}"
        )
    for name, value in context.gateway_headers(provider).items():
        response[name] = value
    context.record(provider=provider, status=response.status_code)
    return _with_reason(response, no_fallback)


def _new_context(request: HttpRequest, metadata: KeyMetadata, data: dict[str, Any]) -> ProxyContext:
    session = request.META.get("HTTP_" + SESSION_HEADER.upper().replace("-", "_"), "")
    return ProxyContext(
        metadata=metadata,
        request_id=new_request_id(),
        session_id=str(session)[:100],
        requested_model=data["model"],
        stream=bool(data.get("stream")),
    )


async def proxy_messages(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    try:
        data = parse_body(body, require_max_tokens=True)
    except BadRequest as exc:
        return error_response(exc.status, exc.error_type, exc.message)
    context = _new_context(request, metadata, data)
    try:
        return await _messages_flow(request, metadata, body, data, context)
    except asyncio.CancelledError:
        # The client hung up before the answer started (streams record their own hang-ups):
        # the request still cost upstream work and is accounted, with what is known.
        context.record(provider=context.attempting, status=499, disconnected=True)
        raise


async def _messages_flow(
    request: HttpRequest,
    metadata: KeyMetadata,
    body: bytes,
    data: dict[str, Any],
    context: ProxyContext,
) -> HttpResponseBase:
    headers, credential = _client_headers(request, metadata)
    betas = bedrock_betas(headers.get("anthropic-beta"))
    circuit = circuit_name("anthropic", credential)

    skip_reason = "" if credential else "no_anthropic_credential"
    if not skip_reason:
        skip_reason = await circuits.should_skip(circuit)
    if skip_reason:
        target = await bedrock_target(metadata, context.requested_model)
        if isinstance(target, BedrockTarget):
            context.fallback_reason = skip_reason
            context.attempting = "bedrock"
            outcome = await call_bedrock(target=target, body=data, betas=betas, context=context)
            if not isinstance(outcome, BedrockFailure):
                return outcome
            # Bedrock failed too: Anthropic still deserves its try.
            context.fallback_reason = ""

    context.attempting = "anthropic"
    result = await attempt_anthropic(
        path=MESSAGES_PATH, body=body, headers=headers, context=context
    )
    if not isinstance(result, AnthropicFailure):
        if result.status_code < 500:
            await circuits.record_success(circuit, started_at=context.started_wall)
        return result
    await circuits.record_failure(circuit, reason=result.reason, retry_at=result.retry_at)
    UPSTREAM_ERRORS.labels("anthropic", result.reason).inc()

    target = await bedrock_target(metadata, context.requested_model)
    if isinstance(target, NoFallback):
        NO_FALLBACK.labels(target.reason).inc()
        logger.warning(
            "no fallback for %s after %s: %s", context.request_id, result.reason, target.detail
        )
        return _anthropic_failed(result, context, no_fallback=target)
    context.fallback_reason = result.reason
    context.attempting = "bedrock"
    outcome = await call_bedrock(target=target, body=data, betas=betas, context=context)
    if isinstance(outcome, BedrockFailure):
        UPSTREAM_ERRORS.labels("bedrock", outcome.error.error_type).inc()
        logger.warning(
            "bedrock fallback failed for %s: %s", context.request_id, outcome.error.message
        )
        return _anthropic_failed(result, context, bedrock_failure=outcome)
    return outcome


async def proxy_count_tokens(
    request: HttpRequest, metadata: KeyMetadata, body: bytes
) -> HttpResponseBase:
    try:
        data = parse_body(body, require_max_tokens=False)
    except BadRequest as exc:
        return error_response(exc.status, exc.error_type, exc.message)
    context = _new_context(request, metadata, data)
    context.stream = False
    context.billable = False  # counting tokens costs nothing and uses no tokens
    headers, credential = _client_headers(request, metadata)
    result: HttpResponseBase | AnthropicFailure = AnthropicFailure(reason="no_anthropic_credential")
    if credential:
        result = await attempt_anthropic(
            path=COUNT_TOKENS_PATH, body=body, headers=headers, context=context
        )
    if not isinstance(result, AnthropicFailure):
        return result
    target = await bedrock_target(metadata, context.requested_model)
    if isinstance(target, NoFallback):
        return _anthropic_failed(result, context, no_fallback=target)
    context.fallback_reason = result.reason
    outcome = await _bedrock_count_tokens(target, data, headers.get("anthropic-beta"), context)
    if isinstance(outcome, BedrockFailure):
        return _anthropic_failed(result, context, bedrock_failure=outcome)
    return outcome


async def _bedrock_count_tokens(
    target: BedrockTarget, data: dict[str, Any], beta_header: str | None, context: ProxyContext
) -> HttpResponseBase | BedrockFailure:
    # CountTokens takes the base model ID: inference-profile prefixes are rejected there.
    model_id = strip_geo_prefix(target.model_id)
    url = f"{target.endpoint}/model/{quote_model_id(model_id)}/count-tokens"
    payload = converse_count_tokens_body(data, betas=bedrock_betas(beta_header))
    try:
        response = await upstream_client().post(
            url,
            content=json.dumps(payload, separators=(",", ":")).encode(),
            headers={
                "authorization": f"Bearer {target.secret}",
                "content-type": "application/json",
                "accept": "application/json",
            },
        )
    except Exception as exc:
        return BedrockFailure(bedrock_transport_error(exc))
    if response.status_code != 200:
        return BedrockFailure(
            bedrock_http_error(response.status_code, response.headers, response.content)
        )
    try:
        tokens = int(response.json()["inputTokens"])
    except (ValueError, KeyError, TypeError):
        return BedrockFailure(bedrock_http_error(500, response.headers, response.content))
    return json_response({"input_tokens": tokens}, headers=context.gateway_headers("bedrock"))


async def proxy_models(request: HttpRequest, metadata: KeyMetadata) -> HttpResponse:
    """Anthropic's model list; when Anthropic cannot answer, the models the map can serve."""
    headers, credential = _client_headers(request, metadata)
    query = request.META.get("QUERY_STRING", "")
    url = settings.GATEWAY_ANTHROPIC_BASE_URL + MODELS_PATH + (f"?{query}" if query else "")
    request_id = new_request_id()
    if credential:
        try:
            response = await upstream_client().get(url, headers=headers)
        except Exception as exc:
            logger.info("models: anthropic unreachable: %s", type(exc).__name__)
        else:
            if response.status_code < 500 and response.status_code != 429:
                passthrough = HttpResponse(response.content, status=response.status_code)
                passthrough["content-type"] = response.headers.get(
                    "content-type", "application/json"
                )
                passthrough["x-gateway-provider"] = "anthropic"
                passthrough["x-gateway-request-id"] = request_id
                return passthrough
    names = await _mapped_model_names()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0))
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": created} for name in names
    ]
    body = {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return json_response(
        body, headers={"x-gateway-provider": "bedrock", "x-gateway-request-id": request_id}
    )


async def _mapped_model_names() -> list[str]:
    await model_map.get("")  # refreshes the map when stale
    return sorted(model_map.names())


def unknown_route(method: str, path: str) -> HttpResponse:
    return json_response(
        error_body("not_found_error", f"No route for {method} {path}."), status=404
    )
