"""Which headers cross the gateway, in each direction (pure functions).

The request keeps everything end-to-end the client sent (credentials, ``anthropic-*``,
``x-stainless-*``, ``user-agent``, Claude Code's own headers) and loses hop-by-hop headers, the
gateway's own cookies and anything that describes the client connection rather than the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# RFC 9110 §7.6.1 hop-by-hop headers, plus those httpx recomputes for the new connection.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

# Never forwarded upstream: the gateway's session cookies, client-address headers, and
# accept-encoding (the gateway reads usage from the bytes it relays, so it asks for identity).
_REQUEST_DROP = HOP_BY_HOP | {
    "cookie",
    "accept-encoding",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "via",
}

# Not copied back to the client: the gateway frames the body itself.
_RESPONSE_DROP = HOP_BY_HOP | {"content-encoding", "set-cookie"}

CREDENTIAL_HEADERS = ("x-api-key", "authorization")


def upstream_request_headers(client_headers: Mapping[str, str]) -> dict[str, str]:
    """Headers to send to Anthropic for a client request (names lower-cased)."""
    headers = {
        name.lower(): value
        for name, value in client_headers.items()
        if name.lower() not in _REQUEST_DROP
    }
    headers["accept-encoding"] = "identity"
    return headers


def has_client_credential(headers: Mapping[str, str]) -> bool:
    return any(headers.get(name) for name in CREDENTIAL_HEADERS)


def client_response_headers(upstream_headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers to pass back to the client."""
    return [(name, value) for name, value in upstream_headers if name.lower() not in _RESPONSE_DROP]


def asgi_request_headers(meta: Mapping[str, object]) -> dict[str, str]:
    """Client headers from a Django request's META (``HTTP_X_API_KEY`` → ``x-api-key``)."""
    headers: dict[str, str] = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = str(value)
    content_type = meta.get("CONTENT_TYPE")
    if content_type:
        headers["content-type"] = str(content_type)
    return headers
