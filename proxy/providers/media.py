"""URL images made into inline bytes for upstreams that cannot fetch them (Bedrock, Gemini,
Ollama).

The fetch itself (``proxy.media_fetch``) refuses private, loopback and link-local addresses and
bounds size and time; this module decides whether a request needs it, gives it a client of its
own and the gateway's limits, and, for ``call_with_inlined_images``, keeps one call's result for
the call's later legs.
"""

from __future__ import annotations

import functools
import ssl
import weakref
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from proxy.media_fetch import inline_url_images as fetch_images
from proxy.translation.hub import JSON

if TYPE_CHECKING:
    from proxy.providers.base import Call


def _is_url_image(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") != "image":
        return False
    source = block.get("source")
    return isinstance(source, dict) and source.get("type") == "url"


def _has_url_image(request: JSON) -> bool:
    """Whether a message, or a tool result in one, holds an image by URL: the places the fetcher
    inlines, and the only ones walked (a Claude Code body has hundreds of tool inputs)."""
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if _is_url_image(block):
                return True
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list) and any(_is_url_image(item) for item in inner):
                    return True
    return False


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA store is the slow part of making a client: done once, shared by all.
    return httpx.create_ssl_context(trust_env=False)


def _image_client() -> httpx.AsyncClient:
    """A client for one request's image fetches, never the shared upstream client: the fetcher
    connects to the address it checked while the Host header and the TLS name stay the URL's,
    which httpx's own transport honours and the upstream client's aiohttp transport does not
    (every https image would fail its certificate check there). Nothing from the environment
    (proxies, netrc) and no upstream credential reaches it."""
    return httpx.AsyncClient(
        timeout=settings.GATEWAY_IMAGE_FETCH_TIMEOUT, verify=_tls_context(), trust_env=False
    )


async def inline_url_images(request: JSON) -> JSON:
    """``request`` with every URL image fetched into a base64 source; ``request`` itself when it
    has none. Raises ``TranslationError`` (a 400 for the client) when a fetch fails."""
    if not _has_url_image(request):
        return request
    async with _image_client() as client:
        return await fetch_images(
            request,
            client=client,
            max_bytes=settings.GATEWAY_IMAGE_FETCH_MAX_BYTES,
            timeout=settings.GATEWAY_IMAGE_FETCH_TIMEOUT,
        )


# The inlined hub request of each live call that had URL images, so that a request tried on
# several legs needing bytes (the Bedrock targets of a routing rule) downloads its images once.
# Keyed by id() because a Call is not hashable; the entry is dropped when the call is collected,
# before its id can be reused.
_inlined_by_call: dict[int, JSON] = {}


async def call_with_inlined_images(call: Call) -> JSON:
    """``inline_url_images`` of ``call``'s hub request, fetched at most once per call."""
    key = id(call)
    inlined = _inlined_by_call.get(key)
    if inlined is not None:
        return inlined
    request = call.hub_request()
    inlined = await inline_url_images(request)
    if inlined is not request:
        _inlined_by_call[key] = inlined
        weakref.finalize(call, _inlined_by_call.pop, key, None)
    return inlined
