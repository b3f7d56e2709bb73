"""Media: extracted from bodies once per content, typed by sniffing, referred to by hash,
served to staff only with safe headers; pruned with the bodies that refer to them."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from requestlog.media import MEDIA_REFERENCE, media_extract, media_path, sniff_content_type
from requestlog.models import MediaObject, RequestBody, RequestLog, RequestMedia
from requestlog.selectors import request_log_bodies
from requestlog.services import request_log_bodies_prune
from requestlog.tests.factories import logged_request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 64
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(autouse=True)
def _media_dir(settings: Any, tmp_path: Path) -> Path:
    settings.GATEWAY_DATA_DIR = tmp_path
    return tmp_path / "media"


def _anthropic_body(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                                 "data": b64(data)}},
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"0" * 20, "image/jpeg"),
        (b"GIF89a" + b"0" * 20, "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (PDF, "application/pdf"),
        (WAV, "audio/wav"),
        (b"ID3\x04" + b"0" * 20, "audio/mpeg"),
        (b"<svg onload=alert(1)>", "application/octet-stream"),
    ],
)
def test_sniffing(data: bytes, expected: str) -> None:
    assert sniff_content_type(data) == expected


def test_every_kind_of_inline_media_is_replaced_by_a_reference(_media_dir: Path) -> None:
    body = {
        "messages": [
            {"content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": b64(PNG)}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                "data": b64(PDF)}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
                {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}"}},
            ]}
        ]
    }  # fmt: skip
    out, found = media_extract(body)
    text = json.dumps(out)
    assert b64(PNG) not in text and b64(PDF) not in text and b64(WAV) not in text
    assert "https://example.com/cat.png" in text
    hashes = {hashlib.sha256(data).hexdigest() for data in (PNG, PDF, WAV)}
    assert {item["sha256"] for item in found} == hashes
    assert text.count(MEDIA_REFERENCE) == 5
    for sha256 in hashes:
        assert (_media_dir / media_path(sha256)).is_file()
    assert len(list(_media_dir.rglob("*"))) == 3 + 3  # three files in three folders


@pytest.mark.django_db
def test_media_are_stored_once_and_typed_by_their_bytes(_media_dir: Path) -> None:
    first = logged_request(body=_anthropic_body(PNG), answer={"content": []})
    second = logged_request(body=_anthropic_body(PDF, media_type="image/png"), answer={})
    third = logged_request(body=_anthropic_body(PNG), answer={})
    assert MediaObject.objects.count() == 2
    assert RequestMedia.objects.count() == 3
    png = MediaObject.objects.get(sha256=hashlib.sha256(PNG).hexdigest())
    pdf = MediaObject.objects.get(sha256=hashlib.sha256(PDF).hexdigest())
    assert (png.content_type, png.size) == ("image/png", len(PNG))
    assert pdf.content_type == "application/pdf"  # claimed image/png, holds a PDF
    bodies = request_log_bodies(first)
    assert bodies is not None and bodies.media == [png.sha256]
    assert request_log_bodies(second).media == [pdf.sha256]  # type: ignore[union-attr]
    assert request_log_bodies(third).media == [png.sha256]  # type: ignore[union-attr]
    assert len([path for path in _media_dir.rglob("*") if path.is_file()]) == 2


@pytest.mark.django_db
def test_media_are_found_whatever_json_escapes_spell_them(
    _media_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from requestlog import capture as capture_module

    walks: list[int] = []
    real_extract = capture_module.media_extract

    def counting(value: Any) -> Any:
        walks.append(1)
        return real_extract(value)

    monkeypatch.setattr(capture_module, "media_extract", counting)
    # "base64" written with escapes: the body's text holds no plain marker.
    escaped = json.dumps(_anthropic_body(PNG)).replace('"base64"', '"\\u0062ase64"')
    assert "base64" not in escaped.replace(b64(PNG), "")
    # OpenAI's usage names audio tokens in every answer: not a sign of a medium.
    answer = {"content": [], "usage": {"prompt_tokens_details": {"audio_tokens": 0}}}
    log = logged_request(body=escaped.encode(), answer=answer)
    bodies = request_log_bodies(log)
    assert bodies is not None
    assert bodies.media == [hashlib.sha256(PNG).hexdigest()]
    assert b64(PNG) not in json.dumps(bodies.request)
    assert walks == [1]  # the request was walked; the answer, with no marker, was not


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_superuser(email="admin@example.com", password="pw-0123456789")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_media_are_served_to_staff_with_safe_headers(staff_client: Client) -> None:
    logged_request(body=_anthropic_body(PNG), answer={})
    logged_request(body=_anthropic_body(PDF), answer={})
    png = staff_client.get(f"/media/{hashlib.sha256(PNG).hexdigest()}")
    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    assert png["X-Content-Type-Options"] == "nosniff"
    assert "attachment" not in png.get("Content-Disposition", "")
    assert b"".join(png.streaming_content) == PNG
    pdf = staff_client.get(f"/media/{hashlib.sha256(PDF).hexdigest()}")
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"].startswith("attachment")
    log = RequestLog.objects.order_by("occurred_at").first()
    assert log is not None
    page = staff_client.get(f"/admin/requestlog/requestlog/{log.pk}/change/").content.decode()
    assert f'src="/media/{hashlib.sha256(PNG).hexdigest()}"' in page


@pytest.mark.django_db
def test_media_access_control_gives_no_hint(staff_client: Client) -> None:
    logged_request(body=_anthropic_body(PNG), answer={})
    existing = f"/media/{hashlib.sha256(PNG).hexdigest()}"
    missing = f"/media/{'0' * 64}"
    anonymous = Client()
    for url in (existing, missing, "/media/not-a-hash"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    User.objects.create_user(email="dev@example.com", password="pw-0123456789")
    user = Client()
    user.login(email="dev@example.com", password="pw-0123456789")
    assert user.get(existing).status_code == 404
    assert user.get(missing).status_code == 404
    assert staff_client.get(missing).status_code == 404
    assert staff_client.get("/media/not-a-hash").status_code == 404


@pytest.mark.django_db
def test_pruning_deletes_old_bodies_and_unreferenced_media_only(_media_dir: Path) -> None:
    now = timezone.now()
    old_png = logged_request(
        body=_anthropic_body(PNG), answer={}, occurred_at=now - timedelta(days=20)
    )
    old_pdf = logged_request(
        body=_anthropic_body(PDF), answer={}, occurred_at=now - timedelta(days=20)
    )
    recent_png = logged_request(body=_anthropic_body(PNG), answer={})
    old_metadata = logged_request(level="metadata", occurred_at=now - timedelta(days=20))
    # Media rows were seen when written; make them as old as their bodies.
    MediaObject.objects.update(last_seen_at=now - timedelta(days=20))
    MediaObject.objects.filter(sha256=hashlib.sha256(PNG).hexdigest()).update(
        last_seen_at=now - timedelta(days=20)
    )
    report = request_log_bodies_prune(retention_days=14, batch_size=1)
    assert report.bodies == 2
    assert report.media == 1  # the PDF; the PNG is still referred to by a recent body
    assert set(RequestBody.objects.values_list("log_id", flat=True)) == {recent_png.pk}
    assert set(MediaObject.objects.values_list("sha256", flat=True)) == {
        hashlib.sha256(PNG).hexdigest()
    }
    assert not (_media_dir / media_path(hashlib.sha256(PDF).hexdigest())).exists()
    assert (_media_dir / media_path(hashlib.sha256(PNG).hexdigest())).exists()
    # The logs themselves stay (usage's retention governs them), marked as without bodies.
    assert RequestLog.objects.count() == 4
    assert not RequestLog.objects.get(pk=old_png.pk).has_body
    assert not RequestLog.objects.get(pk=old_pdf.pk).has_body
    assert RequestLog.objects.get(pk=old_metadata.pk).level == "metadata"
    again = request_log_bodies_prune(retention_days=14)
    assert (again.bodies, again.media) == (0, 0)


@pytest.mark.django_db
def test_the_prune_command_and_task_keep_logs_within_usage_retention(settings: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    from requestlog.tasks import prune_request_logs

    settings.GATEWAY_USAGE_RETENTION_DAYS = 30
    settings.GATEWAY_LOG_BODY_RETENTION_DAYS = 7
    now = timezone.now()
    ancient = logged_request(body={"a": 1}, answer={}, occurred_at=now - timedelta(days=40))
    week_old = logged_request(body={"a": 2}, answer={}, occurred_at=now - timedelta(days=10))
    fresh = logged_request(body={"a": 3}, answer={})
    out = StringIO()
    call_command("prune_request_logs", stdout=out)
    assert "Deleted 2 bodies, 0 media, 1 logs." in out.getvalue()
    assert set(RequestLog.objects.values_list("pk", flat=True)) == {week_old.pk, fresh.pk}
    assert set(RequestBody.objects.values_list("log_id", flat=True)) == {fresh.pk}
    assert ancient.pk not in RequestLog.objects.values_list("pk", flat=True)
    assert prune_request_logs() == {"bodies": 0, "media": 0, "logs": 0}
