"""Who is asking: the client address behind trusted reverse proxies, who may read /metrics, and
which Host names the gateway answers.

The client address feeds the bad-key throttle and the admin login lockout, so a client must not
be able to choose it. A header such as X-Forwarded-For is a list every proxy appends to: entries
on the left come from whoever sent the request and may be anything, entries on the right were
written by the proxies in front of the gateway. GATEWAY_TRUSTED_PROXY_HOPS says how many of those
there are, and the address is the entry the outermost of them appended.

Nothing here reads a forwarded address for access decisions: /metrics is decided on the socket
peer and the token only.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host

# Longest address kept: an IPv6 address with a zone fits; anything longer is not an address.
_MAX_ADDRESS_LENGTH = 64
# Headers a reverse proxy sets when it relays a request: their presence means the loopback
# peer is a proxy on this host, not a local client.
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
# What Django itself allows with DEBUG on and ALLOWED_HOSTS empty.
_DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")


def _meta_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _normalise(entry: str) -> str:
    """An entry as written by a proxy: a bare address, ``v4:port`` or ``[v6]:port``."""
    entry = entry.strip().strip('"')
    candidates = [entry]
    if entry.startswith("["):
        candidates.append(entry[1:].partition("]")[0])
    elif entry.count(":") == 1:
        candidates.append(entry.partition(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return entry[:_MAX_ADDRESS_LENGTH]


def forwarded_address(header_value: str, trusted_hops: int) -> str | None:
    """The client address in a proxy-appended list such as X-Forwarded-For.

    ``trusted_hops`` proxies in front of the gateway each appended one entry, so the one to use
    is the ``trusted_hops``-th from the right; what a client wrote itself sits further left and
    is ignored. None when the list is shorter than that: the request did not come through the
    proxies, and the header is the client's own.
    """
    entries = [entry for entry in (part.strip() for part in header_value.split(",")) if entry]
    if trusted_hops < 1 or len(entries) < trusted_hops:
        return None
    return _normalise(entries[-trusted_hops]) or None


def client_address(request: HttpRequest) -> str:
    """The address a request came from, as the trusted proxies in front of the gateway saw it.

    Without GATEWAY_CLIENT_IP_HEADER: the socket's peer. The admin login lockout uses it too
    (``client_ip``), so lockouts and the key throttle agree on who is who.
    """
    header = settings.GATEWAY_CLIENT_IP_HEADER
    if header:
        value = request.META.get(_meta_name(header), "")
        address = forwarded_address(str(value), settings.GATEWAY_TRUSTED_PROXY_HOPS)
        if address:
            return address
    peer = request.META.get("REMOTE_ADDR")
    return _normalise(str(peer)) if peer else "unknown"


def client_ip(request: HttpRequest) -> str | None:
    """``client_address`` when it is an IP address, else None: django-axes' client address
    (AXES_CLIENT_IP_CALLABLE), stored in an address column that refuses anything else."""
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_access_allowed(request: HttpRequest) -> bool:
    """May this request read /metrics?

    With GATEWAY_METRICS_TOKEN set: only as a bearer of it. Without: only a client on this host
    talking to the gateway directly — the socket peer is a loopback address and no proxy relayed
    the request (a reverse proxy on the same host is a loopback peer for every client it relays).
    REMOTE_ADDR must be the socket peer: the web server must not rewrite it from X-Forwarded-For
    (uvicorn: --no-proxy-headers).
    """
    token = settings.GATEWAY_METRICS_TOKEN
    if token:
        header = str(request.META.get("HTTP_AUTHORIZATION", ""))
        return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    names = list(_FORWARDING_HEADERS)
    if settings.GATEWAY_CLIENT_IP_HEADER:
        names.append(_meta_name(settings.GATEWAY_CLIENT_IP_HEADER))
    if any(name in request.META for name in names):
        return False
    return _is_loopback(str(request.META.get("REMOTE_ADDR") or ""))


def host_allowed(scope_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Does the Host header of an ASGI request name one of ALLOWED_HOSTS?

    The same rule Django applies to the rest of the site (``validate_host``, patterns such as
    ``.example.com`` and ``*``), for routes that skip Django's request handling. A request
    without a Host header (HTTP/1.0) is refused.
    """
    host = next((value for name, value in scope_headers if name.lower() == b"host"), None)
    if host is None:
        return False
    domain, _port = split_domain_port(host.decode("latin-1"))
    if not domain:
        return False
    allowed: Iterable[str] = settings.ALLOWED_HOSTS
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        allowed = _DEBUG_HOSTS
    return validate_host(domain, list(allowed))
