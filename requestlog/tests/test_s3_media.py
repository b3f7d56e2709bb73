"""Media in an S3-compatible bucket (django-storages), against a real S3 server on 127.0.0.1
(moto in server mode): the storage is configured from the environment the way an installation
configures it, a medium from a request through the gateway lands in the bucket, staff read it
back through /media/<hash>, pruning deletes it, and the secret key is never logged."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from django.test import Client
from django.utils import timezone
from moto.server import ThreadedMotoServer

from accounts.models import User
from gateway_project.tests.test_settings import load, production_secrets, start_error
from proxy.testing.fake_upstream import FakeUpstream
from proxy.tests.conftest import GatewayServer, KeyHolder
from requestlog.capture import decode_body
from requestlog.media import media_storage
from requestlog.models import MediaObject, RequestLog
from requestlog.services import request_log_bodies_prune
from requestlog.tests.factories import logged_request
from usage.recording import flush_usage_events

BUCKET = "gateway-media"
PREFIX = "logs/media"
KEY_ID = "gateway-test-key-id"
SECRET = "gateway-test-secret-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server: str) -> Iterator[Any]:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _environment(s3_server: str, secret_file: Path) -> dict[str, str]:
    secret_file.write_text(SECRET + "\n")
    return {
        **production_secrets(),
        "GATEWAY_MEDIA_STORAGE": "s3",
        "GATEWAY_MEDIA_S3_BUCKET": BUCKET,
        "GATEWAY_MEDIA_S3_PREFIX": f"/{PREFIX}/",
        "GATEWAY_MEDIA_S3_ENDPOINT_URL": s3_server,
        "GATEWAY_MEDIA_S3_REGION": "us-east-1",
        "GATEWAY_MEDIA_S3_ACCESS_KEY_ID": KEY_ID,
        "GATEWAY_MEDIA_S3_SECRET_ACCESS_KEY_FILE": str(secret_file),
        "GATEWAY_MEDIA_S3_ADDRESSING_STYLE": "path",
    }


@pytest.fixture
def s3_storages(s3_server: str, bucket: Any, settings: Any, tmp_path: Path) -> dict[str, Any]:
    """STORAGES as settings.py builds it from an installation's environment, in force."""
    loaded = load(tmp_path, _environment(s3_server, tmp_path / "s3-secret"), "STORAGES")
    settings.STORAGES = loaded["STORAGES"]
    # Media must not land in the data directory.
    settings.GATEWAY_DATA_DIR = tmp_path / "data"
    return loaded["STORAGES"]


def test_settings_build_the_s3_storage_from_the_environment(
    s3_storages: dict[str, Any],
) -> None:
    media = s3_storages["requestlog_media"]
    assert media["BACKEND"] == "storages.backends.s3.S3Storage"
    assert media["OPTIONS"]["bucket_name"] == BUCKET
    assert media["OPTIONS"]["location"] == PREFIX
    assert media["OPTIONS"]["access_key"] == KEY_ID
    assert media["OPTIONS"]["secret_key"] == SECRET  # read from the _FILE variant
    assert media["OPTIONS"]["addressing_style"] == "path"
    assert media["OPTIONS"]["default_acl"] is None
    assert s3_storages["staticfiles"]["BACKEND"].endswith("StaticFilesStorage")


def test_default_media_storage_is_the_data_directory(tmp_path: Path) -> None:
    loaded = load(tmp_path, production_secrets(), "STORAGES", "GATEWAY_MEDIA_STORAGE")
    assert loaded["GATEWAY_MEDIA_STORAGE"] == "filesystem"
    assert "requestlog_media" not in loaded["STORAGES"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GATEWAY_MEDIA_STORAGE", "ftp", "GATEWAY_MEDIA_STORAGE: expected filesystem or s3"),
        ("GATEWAY_MEDIA_S3_BUCKET", "", "GATEWAY_MEDIA_S3_BUCKET is not set"),
        ("GATEWAY_MEDIA_S3_ENDPOINT_URL", "minio:9000", "GATEWAY_MEDIA_S3_ENDPOINT_URL: expected"),
        ("GATEWAY_MEDIA_S3_ADDRESSING_STYLE", "dns", "GATEWAY_MEDIA_S3_ADDRESSING_STYLE: expected"),
    ],
)
def test_bad_s3_settings_stop_the_start_naming_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    environment = _environment("http://127.0.0.1:9", tmp_path / "s3-secret")
    environment[name] = value
    error = start_error(tmp_path, environment)
    assert error.startswith(message)
    assert SECRET not in error


@pytest.mark.django_db(transaction=True)
def test_media_through_the_gateway_live_in_the_bucket_and_are_pruned_from_it(
    s3_storages: dict[str, Any],
    bucket: Any,
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: FakeUpstream,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    sha256 = hashlib.sha256(PNG).hexdigest()
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": [{"type": "image", "source": image},
                                                  {"type": "text", "text": "What is this?"}]}],
    }  # fmt: skip
    headers = {"x-api-key": "sk-ant-client-key-0123456789", "anthropic-version": "2023-06-01"}
    with caplog.at_level(logging.DEBUG):
        response = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json=body,
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        flush_usage_events()

        # In the bucket, under the prefix, and nowhere on disk.
        key = f"{PREFIX}/{sha256[:2]}/{sha256}"
        assert bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read() == PNG
        assert [item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]
        assert not (settings.GATEWAY_DATA_DIR / "media").exists()
        assert MediaObject.objects.get().content_type == "image/png"

        # Staff read it back through the gateway.
        staff = Client()
        staff.force_login(
            User.objects.create_superuser(email="admin@example.com", password="pw-0123456789")
        )
        served = staff.get(f"/media/{sha256}")
        assert served.status_code == 200
        assert served["Content-Type"] == "image/png"
        assert b"".join(served.streaming_content) == PNG
        # A second request with the same image stores nothing new.
        again = httpx.post(
            gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
            json=body,
            headers=headers,
            timeout=10,
        )
        assert again.status_code == 200
        flush_usage_events()
        assert RequestLog.objects.count() == 2
        assert bucket.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1

        # Pruning, once the bodies are past retention, deletes the object too.
        later = timezone.now() + timedelta(days=15)
        report = request_log_bodies_prune(retention_days=14, now=later)
        assert (report.bodies, report.media) == (2, 1)
        assert bucket.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
        assert staff.get(f"/media/{sha256}").status_code == 404
    assert SECRET not in caplog.text


@pytest.mark.django_db
def test_a_row_whose_object_is_gone_from_the_bucket_is_a_404(
    s3_storages: dict[str, Any], bucket: Any
) -> None:
    sha256 = "ab" * 32
    MediaObject.objects.create(sha256=sha256, content_type="image/png", size=3)
    assert not media_storage().exists(f"{sha256[:2]}/{sha256}")
    staff = Client()
    staff.force_login(
        User.objects.create_superuser(email="admin@example.com", password="pw-0123456789")
    )
    assert staff.get(f"/media/{sha256}").status_code == 404


@pytest.mark.django_db
def test_a_bucket_out_of_reach_costs_the_medium_not_the_log(
    s3_storages: dict[str, Any], settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    media = s3_storages["requestlog_media"]
    # A closed port; one attempt only, so the test does not wait out the retries.
    settings.STORAGES = {
        **s3_storages,
        "requestlog_media": {
            **media,
            "OPTIONS": {
                **media["OPTIONS"],
                "endpoint_url": "http://127.0.0.1:9",
                "client_config": Config(retries={"total_max_attempts": 1}, connect_timeout=1),
            },
        },
    }
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    body = {"messages": [{"role": "user", "content": [{"type": "image", "source": image}]}]}
    with caplog.at_level(logging.ERROR):
        log = logged_request(body=body, answer={"content": []})
    stored = json.loads(decode_body(log.body.request))
    assert stored["messages"][0]["content"][0]["source"]["data"] == "[medium not stored]"
    assert not MediaObject.objects.exists()
    assert "a medium could not be stored" in caplog.text
    assert SECRET not in caplog.text
