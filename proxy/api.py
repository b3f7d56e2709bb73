"""The proxy routes under /ak/<access_key>/: thin async views over proxy.services.

Each view authenticates the key from the path (proxy's key cache: no query when warm), reads the
body within the size limit and hands over to a service. Every error is Anthropic-shaped.
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
from proxy.context import error_response
from proxy.services import proxy_count_tokens, proxy_messages, proxy_models, unknown_route
from proxy.throttle import auth_throttle, client_address

router = Router()
logger = logging.getLogger(__name__)


def proxy_unexpected_error(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
    """A bug or an outage nobody handled: still one Anthropic-shaped error, never a stack trace
    or an HTML page. The key store being unreachable is an outage (503), anything else a 500."""
    if isinstance(exc, KeyStoreUnavailable):
        logger.error("key store unavailable: %s", exc)
        return error_response(
            503, "overloaded_error", "The gateway cannot verify access keys right now."
        )
    logger.exception("unexpected error on %s", request.path.split("/ak/")[0] or "/ak/")
    return error_response(500, "api_error", "Internal gateway error.")


_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


async def _authenticate(request: HttpRequest, access_key: str) -> KeyMetadata | HttpResponse:
    """The key's metadata, or the 401 (429 for an address that keeps sending bad keys).

    A valid key always works, whatever its address did before: the throttle only decides how
    a bad key is refused.
    """
    metadata = await key_cache.lookup(access_key)
    if metadata is not None:
        return metadata
    address = client_address(request)
    if await auth_throttle.blocked(address):
        AUTH_FAILURES.labels("throttled").inc()
        return error_response(
            429,
            "rate_limit_error",
            "Too many requests with invalid access keys from this address.",
            headers={"retry-after": str(int(settings.GATEWAY_AUTH_FAILURE_WINDOW_SECONDS))},
        )
    await auth_throttle.record_failure(address)
    AUTH_FAILURES.labels("rejected").inc()
    return error_response(401, "authentication_error", "Invalid gateway access key.")


def _too_large(limit: int) -> HttpResponse:
    return error_response(
        413, "request_too_large", f"Request exceeds the maximum allowed size of {limit} bytes."
    )


def _read_body(request: HttpRequest) -> bytes | HttpResponse:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    try:
        body = request.body
    except RequestDataTooBig:
        return _too_large(limit)
    return _too_large(limit) if len(body) > limit else body


def _already_logged(response: HttpResponseBase) -> HttpResponseBase:
    """Keep Django's request logger quiet about proxy responses: upstream 4xx/5xx are the
    clients' business (the proxy logs what matters, with request ids), and a 529 would be
    logged as an "Unknown Status Code" error."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


ProxyService = Callable[[HttpRequest, KeyMetadata, bytes], Awaitable[HttpResponseBase]]


async def _proxy_post(
    request: HttpRequest, access_key: str, service: ProxyService
) -> HttpResponseBase:
    metadata = await _authenticate(request, access_key)
    if isinstance(metadata, HttpResponse):
        return _already_logged(metadata)
    body = _read_body(request)
    if isinstance(body, HttpResponse):
        return _already_logged(body)
    return _already_logged(await service(request, metadata, body))


@router.post("/{access_key}/v1/messages", include_in_schema=False)
async def messages(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_messages)


@router.post("/{access_key}/v1/messages/count_tokens", include_in_schema=False)
async def count_tokens(request: HttpRequest, access_key: str) -> HttpResponseBase:
    return await _proxy_post(request, access_key, proxy_count_tokens)


@router.get("/{access_key}/v1/models", include_in_schema=False)
async def models(request: HttpRequest, access_key: str) -> HttpResponseBase:
    metadata = await _authenticate(request, access_key)
    if isinstance(metadata, HttpResponse):
        return _already_logged(metadata)
    return _already_logged(await proxy_models(request, metadata))


@router.api_operation(
    ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    "/{access_key}/v1/messages",
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
    return error_response(
        405, "invalid_request_error", f"Method {request.method} is not allowed here."
    )


@router.api_operation(["HEAD"], "/{access_key}/{path:rest}", include_in_schema=False)
async def probe(request: HttpRequest, access_key: str, rest: str) -> HttpResponse:
    """Claude Code checks the base URL with ``HEAD <base>/api/hello`` before it starts."""
    metadata = await _authenticate(request, access_key)
    return HttpResponse(status=metadata.status_code if isinstance(metadata, HttpResponse) else 200)


@router.api_operation(_ANY_METHOD, "/{access_key}/{path:rest}", include_in_schema=False)
async def not_found(request: HttpRequest, access_key: str, rest: str) -> HttpResponse:
    return unknown_route(request.method or "GET", "/" + rest)
