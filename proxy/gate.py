"""What the proxy decides before it reads a request's body: wrong host, body too large, bad key.

Django's ASGI handler reads the whole body (spooling it to a temporary file past a few MB)
before any view runs. For the proxy that would mean a client with no valid key could make the
gateway read and store gigabytes before hearing 401. ``early_refusal`` answers from the request
head alone: a Host not in ALLOWED_HOSTS (400), a declared length over GATEWAY_MAX_BODY_BYTES
(413), an unknown key on a request with a body (401, or 429 for an address that keeps trying).
A key it accepts is handed to the view in the ASGI scope, so it is checked once.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse

from accounts.keycache import KeyMetadata, key_cache
from gateway_project.access import host_allowed
from proxy.surfaces import ANTHROPIC_MESSAGES, OPENAI_CHAT, Surface

SCOPE_KEY = "gateway.access_key"


def surface_for_path(path: str) -> Surface:
    """The client format a path belongs to, for errors made before a view knows it."""
    if path.startswith("/v1/") or path.endswith(
        ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
    ):
        return OPENAI_CHAT
    return ANTHROPIC_MESSAGES


def access_key_of(scope: dict[str, Any]) -> str:
    """The access key a request carries: in the /ak/<key>/ path, else as the bearer token."""
    path: str = scope["path"]
    if path.startswith("/ak/"):
        return path[4:].split("/", 1)[0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def too_large(surface: Surface) -> HttpResponse:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    return surface.error_response(
        413, "request_too_large", f"Request exceeds the maximum allowed size of {limit} bytes."
    )


async def early_refusal(scope: dict[str, Any]) -> HttpResponse | None:
    """The answer to give without reading the body, or None to go on."""
    surface = surface_for_path(scope["path"])
    if not host_allowed(scope.get("headers", [])):
        return surface.error_response(400, "invalid_request_error", "Invalid Host header.")
    length = declared_length(scope)
    if length is not None and length > settings.GATEWAY_MAX_BODY_BYTES:
        return too_large(surface)
    if scope.get("method") not in ("POST", "PUT", "PATCH"):
        return None
    from proxy.api import authenticate, proxy_unexpected_error

    access_key = access_key_of(scope)
    if not access_key and scope["path"].startswith("/ak/"):
        return None  # no key in the path: no route either, the router's 404 says so
    answered, cached = await key_cache.lookup_cached(access_key)
    if answered and cached is not None:  # the common case: a warm, valid key
        scope[SCOPE_KEY] = (access_key, cached)
        return None
    # A request object without a body: the throttle needs the client's address only.
    request = ASGIRequest(scope, io.BytesIO())
    try:
        metadata = await authenticate(request, access_key, surface)
    except Exception as exc:  # the key store is away: the same answer the views give
        return proxy_unexpected_error(request, exc)
    if isinstance(metadata, HttpResponse):
        return metadata
    scope[SCOPE_KEY] = (access_key, metadata)
    return None


def checked_key(scope: dict[str, Any], access_key: str) -> KeyMetadata | None:
    """The metadata ``early_refusal`` found for this very key, if it looked."""
    found = scope.get(SCOPE_KEY)
    if found is not None and found[0] == access_key:
        metadata: KeyMetadata = found[1]
        return metadata
    return None
