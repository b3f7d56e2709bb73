"""Fetching URL images into base64 (``proxy.media_fetch``).

Address checks are unit tests over ``blocked_address_reason``; fetching runs through
``httpx.MockTransport`` with the resolver replaced (so host names and redirects are exercised
without the network), and size and time limits against a real HTTP server on 127.0.0.1
(reachable only with ``allow_private=True``, the switch that exists for these tests).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from proxy import media_fetch
from proxy.media_fetch import MAX_REDIRECTS, blocked_address_reason, inline_url_images
from proxy.translation.hub import TranslationError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40


# --- address checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private"),  # reserved, and listed among the private ranges
        ("100.64.0.1", "shared"),
        ("198.18.0.1", "private"),  # benchmarking range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (embedded in IPv6)"),
        ("::ffff:169.254.169.254", "link-local (embedded in IPv6)"),
        ("2002:7f00:1::", "loopback (embedded in IPv6)"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private (embedded in IPv6)"),  # NAT64 of 10.0.0.1
        # Teredo: the client IPv4 is the last 32 bits inverted (~f5ff:fffe = 10.0.0.1).
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private (embedded in IPv6)"),
        ("2001:db8::1", "private"),  # documentation
        ("not-an-ip", "not an IP address"),
    ],
)
def test_blocked_addresses(address: str, reason: str) -> None:
    assert blocked_address_reason(address) == reason


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_address_reason(address) is None


# --- fetching through a mock transport ------------------------------------------------------------

PUBLIC = "93.184.215.14"


def hub_body(*urls: str, in_tool_result: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": "Look"}]
    content += [{"type": "image", "source": {"type": "url", "url": url}} for url in urls]
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if in_tool_result:
        messages += [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [
                            {"type": "text", "text": "here"},
                            {"type": "image", "source": {"type": "url", "url": in_tool_result}},
                        ],
                    }
                ],
            },
        ]
    return {"model": "m", "max_tokens": 10, "messages": messages}


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name -> addresses, used instead of the real resolver (which is never asked)."""
    table: dict[str, list[str]] = {}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    monkeypatch.setattr(media_fetch, "resolve_host", resolve)
    return table


def mock_client(handler: Callable[[httpx.Request], Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def inline(
    body: dict[str, Any], handler: Callable[[httpx.Request], Any], **options: Any
) -> dict[str, Any]:
    options.setdefault("max_bytes", 1000)
    options.setdefault("timeout", 5.0)
    async with mock_client(handler) as client:
        return await inline_url_images(body, client=client, **options)


async def test_url_images_are_inlined_with_the_sniffed_type(dns: dict[str, list[str]]) -> None:
    dns["img.example"] = [PUBLIC]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = PNG if request.url.path == "/a.png" else JPEG
        return httpx.Response(200, content=body, headers={"content-type": "text/plain"})

    body = hub_body("https://img.example/a.png", in_tool_result="https://img.example:8443/b")
    before = copy.deepcopy(body)
    result = await inline(body, handler)
    assert body == before  # the input is not modified
    assert result["messages"][0]["content"][1] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert result["messages"][2]["content"][0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/jpeg",
        "data": base64.b64encode(JPEG).decode(),
    }
    assert result["messages"][1] is body["messages"][1]  # untouched parts are shared
    # The connection goes to the checked address; the name stays in Host and TLS SNI.
    assert sorted(str(r.url) for r in seen) == [
        f"https://{PUBLIC}/a.png",
        f"https://{PUBLIC}:8443/b",
    ]
    assert {r.headers["host"] for r in seen} == {"img.example", "img.example:8443"}
    assert {r.extensions["sni_hostname"] for r in seen} == {"img.example"}


async def test_a_body_without_url_images_is_returned_as_is() -> None:
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing to fetch")

    assert await inline(body, handler) is body


async def test_the_same_url_is_fetched_once(dns: dict[str, list[str]]) -> None:
    dns["img.example"] = [PUBLIC]
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, content=PNG)

    result = await inline(hub_body("http://img.example/a.png", "http://img.example/a.png"), handler)
    assert calls == 1
    assert [b["source"]["type"] for b in result["messages"][0]["content"][1:]] == [
        "base64",
        "base64",
    ]


def fails_with(
    handler: Callable[[httpx.Request], Any] | None = None,
) -> Callable[[httpx.Request], Any]:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"must not be requested: {request.url}")

    return handler or refuse


async def expect_error(
    body: dict[str, Any],
    handler: Callable[[httpx.Request], Any],
    match: str,
    param: str = "messages.0.content.1.source.url",
    **options: Any,
) -> None:
    with pytest.raises(TranslationError, match=match) as caught:
        await inline(body, handler, **options)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("addresses", "match"),
    [
        (["127.0.0.1"], "loopback"),
        ([PUBLIC, "10.0.0.7"], "private"),  # every address is checked
        (["169.254.169.254"], "link-local"),
        (["::ffff:192.168.0.1"], "private"),
        (["fe80::2"], "link-local"),
    ],
)
async def test_hosts_resolving_to_blocked_addresses_are_refused(
    dns: dict[str, list[str]], addresses: list[str], match: str
) -> None:
    dns["evil.example"] = addresses
    await expect_error(hub_body("https://evil.example/x.png"), fails_with(), match)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x.png", "http://[::1]/x.png", "http://169.254.169.254/latest/meta-data"],
)
async def test_ip_literals_are_checked_too(url: str) -> None:
    await expect_error(hub_body(url), fails_with(), "does not fetch")


@pytest.mark.parametrize(
    "url",
    ["ftp://img.example/a.png", "file:///etc/passwd", "gopher://x/", "not a url", "http:///nohost"],
)
async def test_only_http_and_https(dns: dict[str, list[str]], url: str) -> None:
    await expect_error(hub_body(url), fails_with(), "http")


async def test_the_tool_result_field_is_named(dns: dict[str, list[str]]) -> None:
    dns["evil.example"] = ["10.0.0.1"]
    await expect_error(
        hub_body(in_tool_result="https://evil.example/x"),
        fails_with(),
        "private",
        param="messages.2.content.0.content.1.source.url",
    )


async def test_unresolvable_host(dns: dict[str, list[str]]) -> None:
    await expect_error(
        hub_body("https://nowhere.example/x.png"), fails_with(), "could not be resolved"
    )


async def test_redirects_are_rechecked_hop_by_hop(dns: dict[str, list[str]]) -> None:
    dns["img.example"] = [PUBLIC]
    dns["cdn.example"] = ["93.184.215.15"]
    dns["internal.example"] = ["10.0.0.9"]

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.headers["host"]
        if host == "img.example" and request.url.path == "/ok":
            return httpx.Response(302, headers={"location": "https://cdn.example/real.png"})
        if host == "img.example" and request.url.path == "/evil":
            return httpx.Response(301, headers={"location": "http://internal.example/secret"})
        if host == "img.example" and request.url.path == "/loop":
            return httpx.Response(307, headers={"location": "/loop"})
        if host == "img.example" and request.url.path == "/nowhere":
            return httpx.Response(302)
        if host == "cdn.example":
            return httpx.Response(200, content=PNG)
        raise AssertionError(f"must not be requested: {host}{request.url.path}")

    result = await inline(hub_body("https://img.example/ok"), handler)
    assert result["messages"][0]["content"][1]["source"]["media_type"] == "image/png"
    await expect_error(hub_body("https://img.example/evil"), handler, "private")
    await expect_error(hub_body("https://img.example/loop"), handler, f"more than {MAX_REDIRECTS}")
    await expect_error(hub_body("https://img.example/nowhere"), handler, "redirected nowhere")


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(404, content=b"missing"), "HTTP 404"),
        (httpx.Response(200, content=b"<html>hello</html>"), "JPEG, PNG, GIF or WebP"),
        (httpx.Response(200, content=b"BM" + b"\x00" * 50), "JPEG, PNG, GIF or WebP"),
        (httpx.Response(200, content=PNG + b"\x00" * 2000), "larger than 1000 bytes"),
        (
            httpx.Response(200, headers={"content-length": "999999"}, content=b""),
            "larger than 1000 bytes",
        ),
    ],
)
async def test_bad_answers(dns: dict[str, list[str]], response: httpx.Response, match: str) -> None:
    dns["img.example"] = [PUBLIC]
    await expect_error(hub_body("https://img.example/a"), lambda request: response, match)


async def test_a_streamed_body_is_abandoned_past_the_limit(dns: dict[str, list[str]]) -> None:
    dns["img.example"] = [PUBLIC]
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield PNG
        while True:
            sent += 1
            yield b"\x00" * 100

    await expect_error(
        hub_body("https://img.example/a"),
        lambda request: httpx.Response(200, content=endless()),
        "larger than",
    )
    assert sent <= 11


async def test_connection_failures(dns: dict[str, list[str]]) -> None:
    dns["img.example"] = [PUBLIC]

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    await expect_error(hub_body("https://img.example/a"), handler, "could not be fetched")


# --- a real server on 127.0.0.1: time and size ----------------------------------------------------


class ImageServer:
    """A minimal HTTP/1.1 server: /png answers an image, /slow waits, /big streams forever."""

    def __init__(self) -> None:
        self.big_bytes_sent = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ImageServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/png":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PNG) + PNG)
            elif path == b"/slow":
                await asyncio.sleep(10)
            elif path == b"/big":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                block = PNG + b"\x00" * (4096 - len(PNG))
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(block), block))
                    self.big_bytes_sent += len(block)
                    await writer.drain()
                    block = b"\x00" * 4096
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def fetch_local(server: ImageServer, path: str, **options: Any) -> dict[str, Any]:
    options.setdefault("max_bytes", 64 * 1024)
    options.setdefault("timeout", 5.0)
    options.setdefault("allow_private", True)
    async with httpx.AsyncClient() as client:
        return await inline_url_images(hub_body(server.url(path)), client=client, **options)


async def test_local_server_image() -> None:
    async with ImageServer() as server:
        result = await fetch_local(server, "/png")
    assert result["messages"][0]["content"][1]["source"]["data"] == base64.b64encode(PNG).decode()


async def test_local_server_is_refused_without_allow_private() -> None:
    async with ImageServer() as server:
        with pytest.raises(TranslationError, match="loopback"):
            await fetch_local(server, "/png", allow_private=False)


async def test_local_server_too_slow() -> None:
    async with ImageServer() as server:
        started = time.monotonic()
        with pytest.raises(TranslationError, match="longer than 0.5 s") as caught:
            await fetch_local(server, "/slow", timeout=0.5)
        assert time.monotonic() - started < 3
    assert caught.value.param == "messages.0.content.1.source.url"


async def test_local_server_too_big() -> None:
    async with ImageServer() as server:
        with pytest.raises(TranslationError, match="larger than 65536 bytes"):
            await fetch_local(server, "/big")
        await asyncio.sleep(0.05)
        # The client stopped reading: the server could not push far past the limit.
        assert server.big_bytes_sent < 4 * 1024 * 1024
