"""The upstream client: what it sends is what httpx's client would send, minus cookies; it never
keeps an upstream's cookie for the next request (the client is shared by every user of a
worker); it parses each upstream URL once; and httpx's own path still serves what the lean one
does not (redirects followed on request, JSON bodies, query parameters)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from proxy import http_client
from proxy.http_client import UpstreamClient

URL = "https://api.anthropic.com/v1/messages"


def _recording(
    seen: list[httpx.Request], answer: Callable[[httpx.Request], httpx.Response] | None = None
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if answer is not None:
            return answer(request)
        return httpx.Response(200, content=b'{"ok":true}')

    return httpx.MockTransport(handler)


def _sets_a_cookie(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"set-cookie": "__cf_bm=user-a; Path=/; Domain=api.anthropic.com; Secure"},
        content=b"{}",
    )


@pytest.mark.parametrize("how", ["build_and_send", "post", "httpx_own_path"])
async def test_an_upstream_cookie_never_goes_out_with_a_later_request(how: str) -> None:
    seen: list[httpx.Request] = []
    async with UpstreamClient(transport=_recording(seen, _sets_a_cookie)) as client:
        for _ in range(2):
            if how == "post":
                response = await client.post(URL, content=b"{}")
            elif how == "httpx_own_path":
                response = await client.post(URL, content=b"{}", follow_redirects=True)
            else:
                request = client.build_request("POST", URL, content=b"{}")
                response = await client.send(request, stream=True)
                await response.aread()
                await response.aclose()
            assert response.status_code == 200
        assert len(client.cookies.jar) == 0
    assert [request.headers.get("cookie") for request in seen] == [None, None]


async def test_requests_carry_what_httpx_would_send_but_cookies() -> None:
    headers = [(b"x-api-key", b"sk-ant-client"), (b"anthropic-version", b"2023-06-01")]
    timeout = httpx.Timeout(connect=3.0, read=7.0, write=7.0, pool=3.0)
    ours = UpstreamClient(timeout=timeout).build_request("POST", URL, headers=headers, content=b"x")
    httpx_own = httpx.AsyncClient(timeout=timeout).build_request(
        "POST", URL, headers=headers, content=b"x"
    )
    assert ours.method == httpx_own.method
    assert ours.url == httpx_own.url
    assert ours.headers.raw == httpx_own.headers.raw
    assert ours.extensions == httpx_own.extensions
    assert ours.read() == httpx_own.read() == b"x"


async def test_each_url_is_parsed_once_and_the_cache_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_client, "_PARSED_URLS_MAX", 3)
    parsed: list[str] = []

    class Counting(httpx.URL):
        def __init__(self, url: str) -> None:
            parsed.append(url)
            super().__init__(url)

    client = UpstreamClient()
    expected = httpx.URL(URL)
    monkeypatch.setattr(http_client.httpx, "URL", Counting)
    for _ in range(3):
        assert client.build_request("POST", URL).url == expected
    assert parsed == [URL]
    for number in range(3):
        client.build_request("GET", f"https://example.com/{number}")
    assert len(client._parsed) <= 3
    client.build_request("POST", URL)
    assert parsed.count(URL) == 2  # forgotten when the cache was cleared, parsed again
    monkeypatch.undo()
    await client.aclose()


async def test_a_non_streamed_send_reads_the_body_and_a_streamed_one_does_not() -> None:
    seen: list[httpx.Request] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"ok":'
        yield b"true}"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    async with UpstreamClient(transport=_recording(seen, answer)) as client:
        read = await client.send(client.build_request("GET", URL))
        assert read.content == b'{"ok":true}'
        assert read.request is seen[0]
        streamed = await client.send(client.build_request("GET", URL), stream=True)
        assert not streamed.is_stream_consumed
        assert await streamed.aread() == b'{"ok":true}'
        await streamed.aclose()


async def test_httpx_own_path_serves_redirects_json_and_query_parameters() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(307, headers={"location": "https://example.com/new"})
        return httpx.Response(200, json={"path": request.url.path})

    async with UpstreamClient(transport=_recording(seen, answer)) as client:
        followed = await client.get("https://example.com/old", follow_redirects=True)
        assert followed.json() == {"path": "/new"}
        not_followed = await client.get("https://example.com/old")
        assert not_followed.status_code == 307
        await client.post("https://example.com/q", json={"a": 1}, params={"key": "v"})
    assert seen[-1].url.params["key"] == "v"
    assert seen[-1].read() == b'{"a":1}'


async def test_a_closed_client_refuses_to_send() -> None:
    client = UpstreamClient(transport=_recording([]))
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.send(client.build_request("GET", URL))
