"""URL images made into inline bytes for upstreams that cannot fetch them (Bedrock, Gemini,
Ollama).

The fetch itself (``proxy.media_fetch``) refuses private, loopback and link-local addresses and
bounds size and time; this module gives it a client of its own and the gateway's limits, and
keeps one call's result for the call's later legs (``call_with_inlined_images``).
"""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING

import httpx
from django.conf import settings

from proxy.media_fetch import has_url_images
from proxy.media_fetch import inline_url_images as fetch_images
from proxy.translation.hub import JSON

if TYPE_CHECKING:
    from proxy.providers.base import Call


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
    if not has_url_images(request):
        return request
    async with _image_client() as client:
        return await fetch_images(
            request,
            client=client,
            max_bytes=settings.GATEWAY_IMAGE_FETCH_MAX_BYTES,
            timeout=settings.GATEWAY_IMAGE_FETCH_TIMEOUT,
        )


async def call_with_inlined_images(call: Call) -> JSON:
    """``inline_url_images`` of ``call``'s hub request, fetched at most once per call: a request
    tried on several legs that need bytes (the Bedrock targets of a routing rule, Gemini then
    Ollama) downloads its images once."""
    if call.inlined_hub is None:
        call.inlined_hub = await inline_url_images(call.hub_request())
    return call.inlined_hub
