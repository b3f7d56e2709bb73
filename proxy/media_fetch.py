"""Fetch the images a hub request names by URL and inline them as base64, safely.

Upstreams such as Bedrock only take image bytes, so ``image`` blocks with a ``url`` source (in
messages and inside ``tool_result`` content) are fetched by the gateway. A client-chosen URL
fetched from inside the network is a server-side request forgery risk, hence:

- only ``http`` and ``https``; the host name is resolved with the event loop's ``getaddrinfo``
  and **every** address must be globally routable: private, loopback, link-local, multicast,
  reserved, unspecified and shared (CGNAT) ranges are refused, for IPv4 and IPv6 alike, and
  IPv4 addresses embedded in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64) are checked as IPv4;
- the connection goes to the address that was checked (the URL's host is replaced by it; the
  ``Host`` header and TLS SNI/certificate check keep the name), so a second DNS answer cannot
  point elsewhere (DNS rebinding);
- redirects are followed by hand, at most ``MAX_REDIRECTS``, each hop checked the same way;
- the body is streamed and abandoned past ``max_bytes``; all fetches of a request share one
  deadline of ``timeout`` seconds; a few run at once;
- the bytes decide the image type (JPEG, PNG, GIF or WebP), never the server's Content-Type.

Every failure is a ``TranslationError`` naming the field (``messages.0.content.1.source.url``)
with the reason, so the client gets a 400 it can act on. ``allow_private=True`` lifts the address
check; it exists for tests against servers on 127.0.0.1 and must not be used otherwise.
Callers should pass a client used for nothing else: it must not carry upstream credentials, and
its connection pool is keyed by the checked address.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

import httpx

from proxy.translation.hub import JSON, TranslationError
from proxy.translation.media import sniff_image_type

__all__ = [
    "MAX_REDIRECTS",
    "blocked_address_reason",
    "has_url_images",
    "inline_url_images",
    "resolve_host",
]

MAX_REDIRECTS = 3
# Images fetched at once for one request.
MAX_CONCURRENT_FETCHES = 4
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # CGNAT, not "private" in 3.11
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def blocked_address_reason(address: str) -> str | None:
    """Why ``address`` must not be fetched from (``"loopback"``, ``"private"``...), or None."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = blocked_address_reason(str(embedded))
            return f"{reason} (embedded in IPv6)" if reason else None
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE, "shared"),
        (not ip.is_global, "not globally routable"),
    )
    for blocked, reason in checks:
        if blocked:
            return reason
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address, the one traffic would reach
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def inline_url_images(
    body: JSON,
    *,
    client: httpx.AsyncClient,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
) -> JSON:
    """A copy of hub request ``body`` whose URL images are base64 images of the sniffed type.

    Only the containers on the way to a changed block are copied; a body without URL images is
    returned as is. ``timeout`` bounds all fetches together; see the module docstring for the
    address, redirect and size rules.
    """
    targets = _url_images(body)
    if not targets:
        return body
    deadline = asyncio.get_running_loop().time() + timeout
    limit = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
    fetches: dict[str, asyncio.Task[tuple[str, str]]] = {}
    for path, url in targets:
        if url not in fetches:
            fetcher = _Fetcher(
                client=client, max_bytes=max_bytes, timeout=timeout, allow_private=allow_private
            )
            fetches[url] = asyncio.create_task(
                fetcher.fetch(url, param=_param(path), deadline=deadline, limit=limit)
            )
    try:
        await asyncio.gather(*fetches.values())
    except BaseException:
        for task in fetches.values():
            task.cancel()
        raise
    result = dict(body)
    result["messages"] = messages = list(body["messages"])
    for path, url in targets:
        media_type, data = fetches[url].result()
        source = {"type": "base64", "media_type": media_type, "data": data}
        _replace_source(messages, path, source)
    return result


Path = tuple[int, ...]


def has_url_images(body: Mapping[str, Any]) -> bool:
    """Whether ``inline_url_images`` has anything to fetch in hub request ``body`` (a message,
    or a tool result in one, holds an image by URL: the only places walked)."""
    return bool(_url_images(body))


def _param(path: Path) -> str:
    if len(path) == 2:
        return f"messages.{path[0]}.content.{path[1]}.source.url"
    return f"messages.{path[0]}.content.{path[1]}.content.{path[2]}.source.url"


def _url_source(block: Any) -> str | None:
    if not isinstance(block, Mapping) or block.get("type") != "image":
        return None
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "url":
        url = source.get("url")
        return url if isinstance(url, str) else ""
    return None


def _url_images(body: Mapping[str, Any]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, Mapping) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            url = _url_source(block)
            if url is not None:
                found.append(((i, j), url))
            elif isinstance(block, Mapping) and block.get("type") == "tool_result":
                inner = block.get("content")
                for k, item in enumerate(inner if isinstance(inner, list) else []):
                    url = _url_source(item)
                    if url is not None:
                        found.append(((i, j, k), url))
    return found


def _replace_source(messages: list[Any], path: Path, source: JSON) -> None:
    i, j = path[0], path[1]
    message = messages[i] = dict(messages[i])
    content = message["content"] = list(message["content"])
    if len(path) == 2:
        content[j] = {**content[j], "source": source}
        return
    result = content[j] = dict(content[j])
    inner = result["content"] = list(result["content"])
    inner[path[2]] = {**inner[path[2]], "source": source}


class _Fetcher:
    def __init__(
        self, *, client: httpx.AsyncClient, max_bytes: int, timeout: float, allow_private: bool
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allow_private = allow_private

    async def fetch(
        self, url: str, *, param: str, deadline: float, limit: asyncio.Semaphore
    ) -> tuple[str, str]:
        """(sniffed media type, base64 data) of the image at ``url``."""
        try:
            async with asyncio.timeout_at(deadline), limit:
                data = await self._download(url, param)
        except TimeoutError:
            raise TranslationError(
                f"Fetching the image took longer than {self.timeout:g} s.", param=param
            ) from None
        except httpx.HTTPError as error:
            raise TranslationError(
                f"The image could not be fetched ({type(error).__name__}).", param=param
            ) from None
        media_type = sniff_image_type(data)
        if media_type is None:
            raise TranslationError(
                "The URL did not return a JPEG, PNG, GIF or WebP image.", param=param
            )
        return media_type, base64.b64encode(data).decode("ascii")

    async def _download(self, url: str, param: str) -> bytes:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            target = await self._checked_target(current, param)
            request = self.client.build_request(
                "GET", target.pinned, headers=target.headers, extensions=target.extensions
            )
            response = await self.client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise TranslationError("The image URL redirected nowhere.", param=param)
                    current = str(target.url.join(location))
                    continue
                if response.status_code != 200:
                    raise TranslationError(
                        f"The image URL answered HTTP {response.status_code}.", param=param
                    )
                return await self._read(response, param)
            finally:
                await response.aclose()
        raise TranslationError(
            f"The image URL redirected more than {MAX_REDIRECTS} times.", param=param
        )

    async def _read(self, response: httpx.Response, param: str) -> bytes:
        too_large = TranslationError(
            f"The image is larger than {self.max_bytes} bytes.", param=param
        )
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > self.max_bytes:
                raise too_large
        return bytes(data)

    async def _checked_target(self, url: str, param: str) -> _Target:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise TranslationError("The image URL is not a valid URL.", param=param) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise TranslationError("Image URLs must be http:// or https:// URLs.", param=param)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await resolve_host(parsed.raw_host.decode("ascii"), port)
        except (OSError, UnicodeError):
            raise TranslationError(
                f"The image host {parsed.host!r} could not be resolved.", param=param
            ) from None
        if not addresses:
            raise TranslationError(f"The image host {parsed.host!r} has no address.", param=param)
        if not self.allow_private:
            for address in addresses:
                reason = blocked_address_reason(address)
                if reason is not None:
                    raise TranslationError(
                        f"The image host {parsed.host!r} resolves to a {reason} address, "
                        "which the gateway does not fetch from.",
                        param=param,
                    )
        return _Target(parsed, addresses[0])


class _Target:
    """A checked URL and the request that reaches exactly the checked address."""

    def __init__(self, url: httpx.URL, address: str) -> None:
        self.url = url
        self.pinned = url.copy_with(host=address)
        host_header = url.netloc.decode("ascii")
        self.headers = {"Host": host_header, "Accept": "image/*"}
        self.extensions: dict[str, Any] = {}
        if url.scheme == "https":
            # TLS still verifies the certificate against the name, not the address.
            self.extensions["sni_hostname"] = url.raw_host.decode("ascii")
