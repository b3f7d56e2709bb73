"""URL images made into inline bytes for upstreams that cannot fetch them (Gemini, Ollama).

The fetch itself (``proxy.media_fetch``) refuses private, loopback and link-local addresses and
bounds size and time; this module only decides whether a request needs it and applies the
gateway's limits.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from proxy.http_client import upstream_client
from proxy.translation.hub import JSON


def _has_url_image(value: Any) -> bool:
    if isinstance(value, dict):
        source = value.get("source")
        if (
            value.get("type") == "image"
            and isinstance(source, dict)
            and source.get("type") == "url"
        ):
            return True
        return any(_has_url_image(item) for item in value.values() if isinstance(item, list | dict))
    if isinstance(value, list):
        return any(_has_url_image(item) for item in value)
    return False


async def inline_url_images(request: JSON) -> JSON:
    """``request`` with every URL image fetched into a base64 source (unchanged when none)."""
    if not _has_url_image(request.get("messages")):
        return request
    from proxy.media_fetch import inline_url_images as fetch_images

    return await fetch_images(
        request,
        client=upstream_client(),
        max_bytes=settings.GATEWAY_IMAGE_FETCH_MAX_BYTES,
        timeout=settings.GATEWAY_IMAGE_FETCH_TIMEOUT,
    )
