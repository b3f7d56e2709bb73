"""The proxy routes: thin async views over proxy.services.

- ``router`` (mounted under /ak/): ``/ak/<key>/v1/messages``, ``…/count_tokens`` and
  ``/ak/<key>/v1/models`` for Anthropic clients, ``/ak/<key>/v1/chat/completions``,
  ``…/completions`` and ``…/embeddings`` for OpenAI clients. ``GET /v1/models`` answers in
  Anthropic's shape to a client that sends ``anthropic-version`` or ``x-api-key`` (both SDKs and
  Claude Code do), else in OpenAI's.
- ``bearer_router`` (mounted under /v1/): the OpenAI paths with the access key as the bearer
  token, which is how the OpenAI SDK sends ``api_key``.

Each view authenticates the key (proxy's key cache: no query when warm), reads the body within
the size limit and hands over to a service. Errors are in the client's format.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from accounts.keycache import KeyMetadata, KeyStoreUnavailable, key_cache
from gateway_project.observability import AUTH_FAILURES
from proxy.catalog import anthropic_models, openai_models
from proxy.gate import checked_key, surface_for_path, too_large
from proxy.services import (
    proxy_chat,
    proxy_completions,
    proxy_count_tokens,
    proxy_embeddings,
    proxy_messages,
    unknown_route,
)
from proxy.surfaces import ANTHROPIC_MESSAGES, OPENAI_CHAT, Surface
from proxy.throttle import auth_throttle, client_address

router = Router()
bearer_router = Router()
logger = logging.getLogger(__name__)


def proxy_unexpected_error(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
    """A bug or an outage nobody handled: still one Anthropic-shaped error, never a stack trace
    or an HTML page. The key store being unreachable is an outage (503), anything else a 500."""
    surface = surface_for_path(request.path)
    if isinstance(exc, KeyStoreUnavailable):
        logger.error("key store unavailable: %s", exc)
        return surface.error_response(
            503, "overloaded_error", "The gateway cannot verify access keys right now."
        )
    logger.exception("unexpected error on %s", request.path.split("/ak/")[0] or "/ak/")
    return surface.error_response(500, "api_error", "Internal gateway error.")


_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


async def authenticate(
    request: HttpRequest, access_key: str, surface: Surface = ANTHROPIC_MESSAGES
) -> KeyMetadata | HttpResponse:
    """The key's metadata, or the 401 (429 for an address that keeps sending bad keys).

    A valid key always works, whatever its address did before: the throttle only decides how
    a bad key is refused.
    """
    checked = checked_key(request.scope, access_key) if hasattr(request, "scope") else None
    if checked is not None:
        return checked
    metadata = await key_cache.lookup(access_key)
    if metadata is not None:
        return metadata
    address = client_address(request)
    if await auth_throttle.blocked(address):
        AUTH_FAILURES.labels("throttled").inc()
        return surface.error_response(
            429,
            "rate_limit_error",
            "Too many requests with invalid access keys from this address.",
            headers={"retry-after": str(int(settings.GATEWAY_AUTH_FAILURE_WINDOW_SECONDS))},
        )
    await auth_throttle.record_failure(address)
    AUTH_FAILURES.labels("rejected").inc()
    return surface.error_response(401, "authentication_error", "Invalid gateway access key.")


def _read_body(request: HttpRequest, surface: Surface) -> bytes | HttpResponse:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return too_large(surface)
    try:
        body = request.body
    except RequestDataTooBig:
        return too_large(surface)
    return too_large(surface) if len(body) > limit else body


def _already_logged(response: HttpResponseBase) -> HttpResponseBase:
    """Keep Django's request logger quiet about proxy responses: upstream 4xx/5xx are the
    clients' business (the proxy logs what matters, with request ids), and a 529 would be
    logged as an "Unknown Status Code" error."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


ProxyService = Callable[[HttpRequest, KeyMetadata, bytes], Awaitable[HttpResponseBase]]


async def _proxy_post(
    request: HttpRequest,
    access_key: str,
    service: ProxyService,
    surface: Surface = ANTHROPIC_MESSAGES,
) -> HttpResponseBase:
    metadata = await authenticate(request, access_key, surface)
    if isinstance(metadata, HttpResponse):
        return _already_logged(metadata)
    body = _read_body(request, surface)
    if isinstance(body, HttpResponse):
        return _already_logged(body)
    return _already_logged(await service(request, metadata, body))


@router.post("/{access_key}/v1/messages", include_in_schema=False)
async def messages(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_messages)


@router.post("/{access_key}/v1/messages/count_tokens", include_in_schema=False)
async def count_tokens(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_count_tokens)


def _anthropic_client(request: HttpRequest) -> bool:
    return "HTTP_ANTHROPIC_VERSION" in request.META or "HTTP_X_API_KEY" in request.META


@router.get("/{access_key}/v1/models", include_in_schema=False)
async def models(request: HttpRequest, access_key: str) -> HttpResponseBase:
    if not _anthropic_client(request):
        return await _openai_models(request, access_key)
    metadata = await authenticate(request, access_key)
    if isinstance(metadata, HttpResponse):
        return _already_logged(metadata)
    return _already_logged(await anthropic_models(request, metadata))


async def _openai_models(request: HttpRequest, access_key: str) -> HttpResponseBase:
    metadata = await authenticate(request, access_key, OPENAI_CHAT)
    if isinstance(metadata, HttpResponse):
        return _already_logged(metadata)
    return _already_logged(await openai_models(request, metadata))


@router.post("/{access_key}/v1/chat/completions", include_in_schema=False)
async def chat_completions(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_chat, OPENAI_CHAT)


@router.post("/{access_key}/v1/completions", include_in_schema=False)
async def completions(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_completions, OPENAI_CHAT)


@router.post("/{access_key}/v1/embeddings", include_in_schema=False)
async def embeddings(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_embeddings, OPENAI_CHAT)


def _bearer_key(request: HttpRequest) -> str:
    """The access key the OpenAI SDK sends as ``Authorization: Bearer <api_key>``."""
    value = str(request.META.get("HTTP_AUTHORIZATION", ""))
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@bearer_router.post("/chat/completions", include_in_schema=False)
async def bearer_chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _proxy_post(request, _bearer_key(request), proxy_chat, OPENAI_CHAT)


@bearer_router.post("/completions", include_in_schema=False)
async def bearer_completions(request: HttpRequest) -> HttpResponseBase:
    return await _proxy_post(request, _bearer_key(request), proxy_completions, OPENAI_CHAT)


@bearer_router.post("/embeddings", include_in_schema=False)
async def bearer_embeddings(request: HttpRequest) -> HttpResponseBase:
    return await _proxy_post(request, _bearer_key(request), proxy_embeddings, OPENAI_CHAT)


@bearer_router.get("/models", include_in_schema=False)
async def bearer_models(request: HttpRequest) -> HttpResponseBase:
    return await _openai_models(request, _bearer_key(request))


@bearer_router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/chat/completions",
    include_in_schema=False,
)
@bearer_router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], "/completions", include_in_schema=False
)
@bearer_router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], "/embeddings", include_in_schema=False
)
@bearer_router.api_operation(
    ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], "/models", include_in_schema=False
)
async def bearer_wrong_method(request: HttpRequest) -> HttpResponse:
    return OPENAI_CHAT.error_response(
        405, "invalid_request_error", f"Method {request.method} is not allowed here."
    )


@bearer_router.api_operation(_ANY_METHOD + ["HEAD"], "/{path:rest}", include_in_schema=False)
async def bearer_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    return unknown_route(request.method or "GET", "/v1/" + rest, OPENAI_CHAT)


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/messages",
    include_in_schema=False,
)
@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/chat/completions",
    include_in_schema=False,
)
@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/completions",
    include_in_schema=False,
)
@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/embeddings",
    include_in_schema=False,
)
@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/messages/count_tokens",
    include_in_schema=False,
)
@router.api_operation(
    ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/models",
    include_in_schema=False,
)
async def wrong_method(request: HttpRequest, access_key: str) -> HttpResponse:
    return surface_for_path(request.path).error_response(
        405, "invalid_request_error", f"Method {request.method} is not allowed here."
    )


@router.api_operation(["HEAD"], "/{access_key}/{path:rest}", include_in_schema=False)
async def probe(request: HttpRequest, access_key: str, rest: str) -> HttpResponse:
    """Claude Code checks the base URL with ``HEAD <base>/api/hello`` before it starts."""
    metadata = await authenticate(request, access_key)
    return HttpResponse(status=metadata.status_code if isinstance(metadata, HttpResponse) else 200)


@router.api_operation(_ANY_METHOD, "/{access_key}/{path:rest}", include_in_schema=False)
async def not_found(request: HttpRequest, access_key: str, rest: str) -> HttpResponse:
    return unknown_route(request.method or "GET", "/" + rest)
