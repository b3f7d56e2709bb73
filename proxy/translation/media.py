"""Image helpers shared by the translators: sniffing an image's type and reading ``data:`` URLs.

Clients often claim the wrong type for an image (``image/jpg``, ``image/png`` on a JPEG,
``application/octet-stream``), and Anthropic rejects an image whose declared ``media_type`` does
not match its bytes. So the type sent upstream is always the one read from the bytes' magic
numbers, and only the four formats every upstream takes (JPEG, PNG, GIF, WebP) pass.

Fetching ``https://`` images is I/O and lives in ``proxy.media_fetch``. Pure: no Django, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re

from proxy.translation.hub import TranslationError

__all__ = [
    "IMAGE_MEDIA_TYPES",
    "SNIFF_BYTES",
    "normalize_media_type",
    "parse_data_url",
    "sniff_base64_image_type",
    "sniff_image_type",
]

IMAGE_MEDIA_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp"}
)

# The longest signature checked below is WebP's (bytes 0..11).
SNIFF_BYTES = 12

# Names clients use for the same four types.
_MEDIA_TYPE_ALIASES: dict[str, str] = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

# data:[<mime>][;param=value]*;base64,<payload>. Parameters (charset, name...) are allowed and
# ignored; only base64 payloads are accepted (an image in percent-encoding is not worth supporting).
_DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*);base64,(?P<data>.*)",
    re.IGNORECASE | re.DOTALL,
)
_BASE64_WHITESPACE = re.compile(r"\s+")


def sniff_image_type(data: bytes) -> str | None:
    """The media type of an image from its first bytes: JPEG, PNG, GIF or WebP; None otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_base64_image_type(payload: str) -> str | None:
    """``sniff_image_type`` of a base64 payload, decoding only the first bytes (cheap on MBs)."""
    # 16 base64 characters decode to exactly 12 bytes, with no padding question.
    head = payload[:16]
    try:
        return sniff_image_type(base64.b64decode(head, validate=True))
    except (binascii.Error, ValueError):
        return None


def normalize_media_type(media_type: str) -> str:
    """A media type lowercased, parameters dropped, aliases such as ``image/jpg`` resolved."""
    bare = media_type.split(";", 1)[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(bare, bare)


def parse_data_url(url: str, *, param: str | None = None) -> tuple[str, str]:
    """``(claimed media type, base64 payload)`` of a ``data:<mime>;base64,<payload>`` URL.

    The claimed type is normalised (``image/jpg`` → ``image/jpeg``) and is ``""`` when the URL
    names none. The payload is checked to be valid base64 (whitespace, which some clients wrap
    long payloads with, is removed) and returned without padding errors. Raises
    ``TranslationError`` naming ``param`` for anything else.
    """
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise TranslationError(
            "Invalid data URL: expected data:<media type>;base64,<data>.", param=param
        )
    payload = match.group("data")
    if _BASE64_WHITESPACE.search(payload):
        payload = _BASE64_WHITESPACE.sub("", payload)
    if not payload:
        raise TranslationError("The data URL holds no data.", param=param)
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TranslationError("The data URL's payload is not valid base64.", param=param) from None
    mime = match.group("mime") or ""
    return normalize_media_type(mime) if mime else "", payload
