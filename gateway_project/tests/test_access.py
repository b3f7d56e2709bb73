"""Client addresses behind trusted proxies, /metrics access and the Host check of the proxy."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import RequestFactory

from gateway_project.access import (
    client_address,
    client_ip,
    forwarded_address,
    host_allowed,
    metrics_access_allowed,
)

# --- forwarded_address ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "hops", "expected"),
    [
        # One proxy appended the right-most entry; what the client wrote is on the left.
        ("203.0.113.7", 1, "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7", 1, "203.0.113.7"),
        ("127.0.0.1, 10.0.0.1,203.0.113.7", 1, "203.0.113.7"),
        # Two proxies (a CDN, then nginx): the CDN's entry is the client's address.
        ("spoofed, 203.0.113.7, 192.0.2.50", 2, "203.0.113.7"),
        # Too few entries for the configured proxies: nothing in it can be trusted.
        ("203.0.113.7", 2, None),
        ("", 1, None),
        (" , ", 1, None),
        # Ports and brackets as some proxies write them; IPv6 in its canonical form.
        ("203.0.113.7:5123", 1, "203.0.113.7"),
        ("[2001:DB8::1]:443", 1, "2001:db8::1"),
        ("2001:db8:0::1", 1, "2001:db8::1"),
    ],
)
def test_forwarded_address_takes_the_entry_the_trusted_proxies_wrote(
    header: str, hops: int, expected: str | None
) -> None:
    assert forwarded_address(header, hops) == expected


def test_forwarded_address_bounds_what_it_keeps() -> None:
    assert forwarded_address("x" * 500, 1) == "x" * 64


def test_client_address_ignores_entries_a_client_rotates(settings: Any) -> None:
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 1
    factory = RequestFactory()
    addresses = {
        client_address(
            factory.get(
                "/", HTTP_X_FORWARDED_FOR=f"10.9.8.{n}, 203.0.113.7", REMOTE_ADDR="10.0.0.2"
            )
        )
        for n in range(30)
    }
    assert addresses == {"203.0.113.7"}


def test_client_address_without_a_header_is_the_peer(settings: Any) -> None:
    settings.GATEWAY_CLIENT_IP_HEADER = ""
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="1.2.3.4", REMOTE_ADDR="192.0.2.9")
    assert client_address(request) == "192.0.2.9"


def test_client_address_falls_back_to_the_peer_when_the_header_is_short(settings: Any) -> None:
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Real-IP"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 2
    request = RequestFactory().get("/", HTTP_X_REAL_IP="1.2.3.4", REMOTE_ADDR="192.0.2.9")
    assert client_address(request) == "192.0.2.9"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 1
    assert client_address(request) == "1.2.3.4"


# --- /metrics ---------------------------------------------------------------------------------


def asgi_request(client: tuple[str, int], headers: list[tuple[bytes, bytes]]) -> ASGIRequest:
    """A request as uvicorn hands it to Django, with the socket peer in the scope."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    return ASGIRequest(scope, io.BytesIO())


def test_metrics_without_a_token_answer_direct_loopback_clients(settings: Any) -> None:
    settings.GATEWAY_METRICS_TOKEN = ""
    settings.GATEWAY_CLIENT_IP_HEADER = ""
    assert metrics_access_allowed(asgi_request(("127.0.0.1", 50000), []))
    assert metrics_access_allowed(asgi_request(("::1", 50000), []))
    assert not metrics_access_allowed(asgi_request(("203.0.113.9", 50000), []))


@pytest.mark.parametrize(
    "header",
    [
        (b"x-forwarded-for", b"127.0.0.1"),
        (b"x-forwarded-for", b"203.0.113.9, 127.0.0.1"),
        (b"forwarded", b"for=127.0.0.1"),
        (b"x-real-ip", b"127.0.0.1"),
    ],
)
def test_metrics_refuse_requests_relayed_by_a_local_proxy(
    settings: Any, header: tuple[bytes, bytes]
) -> None:
    # A reverse proxy on this host connects from loopback for every client it relays: a
    # forwarded loopback address proves nothing.
    settings.GATEWAY_METRICS_TOKEN = ""
    assert not metrics_access_allowed(asgi_request(("127.0.0.1", 50000), [header]))


def test_metrics_refuse_the_configured_client_header_too(settings: Any) -> None:
    settings.GATEWAY_METRICS_TOKEN = ""
    settings.GATEWAY_CLIENT_IP_HEADER = "CF-Connecting-IP"
    request = asgi_request(("127.0.0.1", 50000), [(b"cf-connecting-ip", b"127.0.0.1")])
    assert not metrics_access_allowed(request)


def test_metrics_with_a_token_need_it_from_anywhere(settings: Any) -> None:
    settings.GATEWAY_METRICS_TOKEN = "metrics-token-123"
    bearer = (b"authorization", b"Bearer metrics-token-123")
    assert not metrics_access_allowed(asgi_request(("127.0.0.1", 50000), []))
    assert not metrics_access_allowed(
        asgi_request(("127.0.0.1", 50000), [(b"authorization", b"Bearer wrong")])
    )
    assert metrics_access_allowed(asgi_request(("203.0.113.9", 50000), [bearer]))
    assert metrics_access_allowed(
        asgi_request(("127.0.0.1", 1), [bearer, (b"x-forwarded-for", b"203.0.113.9")])
    )


# --- Host -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"gateway.example.com", True),
        (b"GATEWAY.example.com:8443", True),
        (b"api.internal.example", True),
        (b"deep.api.internal.example", True),
        (b"internal.example", True),
        (b"evil.example.com", False),
        (b"gateway.example.com.evil.net", False),
        (b"bad host", False),
        (b"", False),
    ],
)
def test_host_allowed_follows_allowed_hosts(settings: Any, host: bytes, allowed: bool) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["gateway.example.com", ".internal.example"]
    assert host_allowed([(b"accept", b"*/*"), (b"host", host)]) is allowed


def test_host_allowed_refuses_a_request_without_host(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    assert not host_allowed([(b"accept", b"*/*")])
    assert host_allowed([(b"host", b"anything.example")])


def test_host_allowed_in_debug_with_no_hosts_is_local_only(settings: Any) -> None:
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = []
    assert host_allowed([(b"host", b"localhost:8000")])
    assert host_allowed([(b"host", b"[::1]:8000")])
    assert not host_allowed([(b"host", b"gateway.example.com")])


def test_client_ip_is_an_address_or_nothing(settings: Any) -> None:
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 1
    factory = RequestFactory()
    assert client_ip(factory.get("/", HTTP_X_FORWARDED_FOR="a, 203.0.113.7:80")) == "203.0.113.7"
    # Proxies may write "unknown"; an address column would refuse it.
    assert client_ip(factory.get("/", HTTP_X_FORWARDED_FOR="unknown")) is None
    request = factory.get("/")
    del request.META["REMOTE_ADDR"]
    assert client_ip(request) is None
