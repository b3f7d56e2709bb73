"""Media in bodies (images, audio, documents), stored once under their SHA-256.

``media_extract`` walks a request or answer body and replaces each inline base64 payload —
Anthropic ``image`` / ``document`` blocks with a ``base64`` source, OpenAI ``image_url`` data
URLs (in requests, and the ``images`` some OpenAI-compatible servers put in answers),
``input_audio`` and ``file`` data, the ``audio.data`` of an OpenAI assistant message, Gemini
``inlineData`` parts — with a reference ``gateway-media:<sha256>``; the bytes go to the media
store once. The stored content type is sniffed from the bytes, whatever the
body claimed: a part that says PNG and holds a PDF is stored (and served) as a PDF.

The store is Django's ``STORAGES["requestlog_media"]`` when an installation configures one
(an S3-compatible backend, say), else files under GATEWAY_DATA_DIR/media.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

logger = logging.getLogger(__name__)

MEDIA_REFERENCE = "gateway-media:"
STORAGE_ALIAS = "requestlog_media"

_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\xff\xfb", "audio/mpeg"),
    (0, b"\xff\xf3", "audio/mpeg"),
    (0, b"PK\x03\x04", "application/zip"),
)
# Served inline (shown in the log viewer); everything else is a download. SVG is not among
# them: it can carry script.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def sniff_content_type(data: bytes) -> str:
    """The type the bytes are, from their first bytes (not from any claim about them)."""
    for offset, magic, content_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[4:8] == b"ftyp":
        return "audio/mp4" if data[8:11] == b"M4A" else "video/mp4"
    return "application/octet-stream"


def media_storage() -> Storage:
    if STORAGE_ALIAS in settings.STORAGES:
        return storages[STORAGE_ALIAS]
    return FileSystemStorage(location=settings.GATEWAY_DATA_DIR / "media")


def media_path(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"


def media_store(data: bytes) -> dict[str, Any]:
    """Save ``data`` once (by content) and describe it."""
    sha256 = hashlib.sha256(data).hexdigest()
    storage = media_storage()
    name = media_path(sha256)
    if not storage.exists(name):
        saved = storage.save(name, ContentFile(data))
        if saved != name:  # another writer stored the same bytes meanwhile
            storage.delete(saved)
    return {"sha256": sha256, "content_type": sniff_content_type(data), "size": len(data)}


def _decode(payload: Any) -> bytes | None:
    if not isinstance(payload, str) or len(payload) < 16:
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        # Google's JSON may carry bytes in the URL-safe alphabet.
        return base64.b64decode(payload, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


def _data_url(url: Any) -> bytes | None:
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        return None
    return _decode(payload)


def _replace(
    holder: dict[str, Any], key: str, data: bytes | None, found: list[dict[str, Any]]
) -> None:
    if data is None:
        return
    try:
        stored = media_store(data)
    except Exception:
        # Whatever the storage backend raises (a bucket away, a full disk): the log is kept,
        # without this medium.
        logger.exception("request log: a medium could not be stored; it is left out")
        holder[key] = "[medium not stored]"
        return
    found.append(stored)
    holder[key] = MEDIA_REFERENCE + stored["sha256"]


def media_extract(value: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The body with inline media replaced by references (in place), and the media it refers
    to (``sha256``, ``content_type``, ``size``)."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, dict | list))
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        source = node.get("source")
        if kind in ("image", "document") and isinstance(source, dict):
            if source.get("type") == "base64":
                _replace(source, "data", _decode(source.get("data")), found)
        elif kind == "image_url" and isinstance(node.get("image_url"), dict):
            image = node["image_url"]
            _replace(image, "url", _data_url(image.get("url")), found)
        elif kind == "input_audio" and isinstance(node.get("input_audio"), dict):
            audio = node["input_audio"]
            _replace(audio, "data", _decode(audio.get("data")), found)
        elif kind == "file" and isinstance(node.get("file"), dict):
            file = node["file"]
            _replace(file, "file_data", _data_url(file.get("file_data")), found)
        elif node.get("role") == "assistant" and isinstance(node.get("audio"), dict):
            # An OpenAI answer's spoken reply; in a request the same field holds only its id.
            audio = node["audio"]
            _replace(audio, "data", _decode(audio.get("data")), found)
        else:
            for name in ("inlineData", "inline_data"):  # Gemini's JSON takes either spelling
                blob = node.get(name)
                if isinstance(blob, dict):
                    _replace(blob, "data", _decode(blob.get("data")), found)
        stack.extend(item for item in node.values() if isinstance(item, dict | list))
    return value, found


def media_delete_unreferenced(*, older_than: datetime, batch_size: int = 1000) -> int:
    """Delete media no body refers to and not seen since ``older_than``: rows, then files."""
    from django.db.models import Exists, OuterRef

    from requestlog.models import MediaObject, RequestMedia

    storage = media_storage()
    deleted = 0
    while True:
        hashes = list(
            MediaObject.objects.filter(last_seen_at__lt=older_than)
            .exclude(Exists(RequestMedia.objects.filter(media_id=OuterRef("pk"))))
            .values_list("sha256", flat=True)[:batch_size]
        )
        if not hashes:
            return deleted
        # Deleted only if still unreferenced and unseen: a writer may have just used one.
        MediaObject.objects.filter(sha256__in=hashes, last_seen_at__lt=older_than).exclude(
            Exists(RequestMedia.objects.filter(media_id=OuterRef("pk")))
        ).delete()
        gone = set(hashes) - set(
            MediaObject.objects.filter(sha256__in=hashes).values_list("sha256", flat=True)
        )
        for sha256 in gone:
            try:
                storage.delete(media_path(sha256))
            except Exception:  # any backend's failure; the row is gone, the object is orphaned
                logger.warning("request log: could not delete medium %s", sha256, exc_info=True)
        deleted += len(gone)
        if len(hashes) < batch_size:
            return deleted
