"""Image type sniffing and ``data:`` URL parsing (``proxy.translation.media``)."""

from __future__ import annotations

import base64

import pytest

from proxy.translation.hub import TranslationError
from proxy.translation.media import (
    normalize_media_type,
    parse_data_url,
    sniff_base64_image_type,
    sniff_image_type,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xdb\x00\x43\x00"
GIF87 = b"GIF87a\x01\x00\x01\x00"
GIF89 = b"GIF89a\x01\x00\x01\x00"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L"


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF87, "image/gif"),
        (GIF89, "image/gif"),
        (WEBP, "image/webp"),
        (b"RIFF\x1a\x00\x00\x00WAVEfmt ", None),  # RIFF, but audio
        (b"BM6\x00\x00\x00", None),  # BMP
        (b"\x00\x00\x01\x00", None),  # ICO
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"%PDF-1.7", None),
        (b"\x89PN", None),  # truncated
        (b"", None),
    ],
)
def test_sniff_image_type(data: bytes, media_type: str | None) -> None:
    assert sniff_image_type(data) == media_type
    assert sniff_base64_image_type(base64.b64encode(data + b"\x00" * 32).decode()) == (
        sniff_image_type(data + b"\x00" * 32)
    )


def test_sniff_base64_only_needs_the_head_and_rejects_garbage() -> None:
    payload = base64.b64encode(PNG + b"\x00" * 10_000).decode()
    assert sniff_base64_image_type(payload) == "image/png"
    assert sniff_base64_image_type("!!!!not-base64!!!!") is None
    assert sniff_base64_image_type("") is None


@pytest.mark.parametrize(
    ("claimed", "normalized"),
    [
        ("image/jpg", "image/jpeg"),
        ("IMAGE/JPEG", "image/jpeg"),
        ("image/pjpeg", "image/jpeg"),
        ("image/png; charset=binary", "image/png"),
        ("image/webp", "image/webp"),
    ],
)
def test_normalize_media_type(claimed: str, normalized: str) -> None:
    assert normalize_media_type(claimed) == normalized


def test_parse_data_url() -> None:
    payload = base64.b64encode(PNG).decode()
    assert parse_data_url(f"data:image/jpg;base64,{payload}") == ("image/jpeg", payload)
    assert parse_data_url(f"data:image/png;name=a.png;base64,{payload}") == ("image/png", payload)
    assert parse_data_url(f"DATA:image/png;BASE64,{payload}") == ("image/png", payload)
    assert parse_data_url(f"data:;base64,{payload}") == ("", payload)
    wrapped = payload[:8] + "\n" + payload[8:] + "\r\n"
    assert parse_data_url(f"data:image/png;base64,{wrapped}") == ("image/png", payload)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "data:image/png,notbase64",
        "data:image/png;base64,",
        "data:image/png;base64,@@@@",
        "data:image/png;base64,abc",  # bad padding
        "data:image/png;base64",
        "data:image png;base64,AAAA",
    ],
)
def test_malformed_data_urls_are_translation_errors(url: str) -> None:
    with pytest.raises(TranslationError) as caught:
        parse_data_url(url, param="messages.0.content.0.image_url.url")
    assert caught.value.param == "messages.0.content.0.image_url.url"
