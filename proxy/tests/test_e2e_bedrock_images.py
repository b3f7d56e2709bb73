"""End to end: an image given by URL, on the way to Bedrock.

The official SDKs → the gateway under uvicorn → the fake Anthropic (which fails with 529) → the
fake Bedrock, which records what it got. Anthropic fetches URL images itself, so its leg passes
the URL on; Bedrock takes bytes only, so its leg fetches the image first, with the gateway's safe
fetcher. The image host is a real HTTP(S) server on 127.0.0.1. Loopback is one of the addresses
the fetcher refuses, so the tests that need a fetch to succeed name the server ``images.test``
and let that name resolve to 127.0.0.1, and 127.0.0.1 through the address check
(``images_test_on_loopback``); the refusal test leaves both alone.
"""

from __future__ import annotations

import base64
import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential
from accounts.services import provider_credential_set
from proxy import media_fetch
from proxy.models import RoutingRule
from proxy.providers import media as provider_media
from proxy.rule_services import TargetSpec, routing_rule_save
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.testing.records import RecordedRequest
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import ANTHROPIC_KEY, anthropic_client, openai_client
from proxy.tests.test_translation_converse_validation import assert_valid_converse

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BEDROCK_MODEL = "global.anthropic.claude-sonnet-4-6"
SECOND_BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5Erk"
    "Jggg=="
)
PNG_DATA = base64.b64encode(PNG_1PX).decode()
# Named .jpg and served as image/jpeg, but a PNG: Bedrock must be told what the bytes are.
IMAGE_PATH = "/photo.jpg"
IMAGE_HOST = "images.test"
ANSWER = ScriptedAnswer.text("A single pixel.", usage={"input_tokens": 20, "output_tokens": 5})


class ImageServer:
    """An HTTP server on 127.0.0.1 (HTTPS with ``tls``) that serves one image and records the
    path and Host header of each request."""

    def __init__(self, images: dict[str, bytes], tls: ssl.SSLContext | None = None) -> None:
        self.images = images
        self.requests: list[tuple[str, str]] = []
        self.scheme = "https" if tls is not None else "http"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get("Host", "")))
                data = server.images.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{IMAGE_HOST}:{self.port}{path}"

    def loopback_url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def loopback_images() -> Iterator[ImageServer]:
    """The image server, reached only as 127.0.0.1 (which the fetcher refuses)."""
    with ImageServer({IMAGE_PATH: PNG_1PX}) as server:
        yield server


@pytest.fixture
def images(loopback_images: ImageServer, images_test_on_loopback: None) -> ImageServer:
    """The image server, reached as ``images.test``, which the gateway fetches from."""
    return loopback_images


@pytest.fixture
def images_test_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """``images.test`` resolves to 127.0.0.1, and the fetcher's address check lets 127.0.0.1 (and
    nothing else it refuses) through. The gateway runs in this process: it uses both."""
    resolve = media_fetch.resolve_host
    refused = media_fetch.blocked_address_reason

    async def images_test_resolved(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == IMAGE_HOST else await resolve(host, port)

    def loopback_allowed(address: str) -> str | None:
        return None if address == "127.0.0.1" else refused(address)

    monkeypatch.setattr(media_fetch, "resolve_host", images_test_resolved)
    monkeypatch.setattr(media_fetch, "blocked_address_reason", loopback_allowed)


def _certificate(directory: Path) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for IMAGE_HOST: (certificate file, key file, certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, IMAGE_HOST)])
    now = datetime.datetime.now(tz=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(IMAGE_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    certificate_file, key_file = directory / "cert.pem", directory / "key.pem"
    certificate_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_file, key_file, pem


@pytest.fixture
def tls_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images_test_on_loopback: None
) -> Iterator[ImageServer]:
    """The image server over HTTPS with a certificate for IMAGE_HOST, which the gateway's image
    fetches trust (instead of the public CAs), reached as ``images.test``."""
    certificate_file, key_file, pem = _certificate(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certificate_file, key_file)
    client_tls = ssl.create_default_context(cadata=pem.decode("ascii"))
    monkeypatch.setattr(provider_media, "_tls_context", lambda: client_tls)
    with ImageServer({IMAGE_PATH: PNG_1PX}, tls=server_tls) as server:
        yield server


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream, bedrock_credential: None) -> FakeUpstream:
    """The fake Anthropic and Bedrock behind it, a Bedrock credential stored."""
    fake_upstream_settings.answer = ANSWER
    return fake_upstream_settings


def _set_mode(mode: str) -> None:
    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()


def _url_image_message(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": url}},
                {"type": "text", "text": "What is in this image?"},
            ],
        }
    ]


def _ask(client: anthropic.Anthropic, url: str, *, stream: bool) -> tuple[Any, Any]:
    """(the answer, its response headers)."""
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": _url_image_message(url),
    }
    if stream:
        with client.messages.stream(**params) as events:
            return events.get_final_message(), events.response.headers
    raw = client.messages.with_raw_response.create(**params)
    return raw.parse(), raw.headers


def _bedrock_image(request: RecordedRequest, mode: str) -> dict[str, Any]:
    """The first user block Bedrock got (the image), checked against the mode's request shape."""
    body = request.json()
    if mode == "converse":
        assert_valid_converse(body, model_id=request.model_id or "")
    return body["messages"][0]["content"][0]


def _expected_image(mode: str) -> dict[str, Any]:
    if mode == "converse":
        return {"image": {"format": "png", "source": {"bytes": PNG_DATA}}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_a_url_image_reaches_bedrock_as_the_fetched_bytes(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    images: ImageServer,
    mode: str,
    stream: bool,
) -> None:
    _set_mode(mode)
    client = anthropic_client(gateway_server, key_holder.plaintext)
    url = images.url(IMAGE_PATH)

    # Anthropic answers: it fetches the image itself, so the gateway does not.
    direct, _ = _ask(client, url, stream=stream)
    assert direct.content[0].text == "A single pixel."
    assert images.paths == []

    fake.add_fault("anthropic", HttpError(status=529))
    message, headers = _ask(client, url, stream=stream)
    assert message.content[0].text == "A single pixel."
    assert headers["x-gateway-provider"] == "bedrock"
    assert headers["x-gateway-fallback-reason"] == "anthropic_529"
    # Fetched once, from the checked address, with the URL's own host name.
    assert images.requests == [(IMAGE_PATH, f"{IMAGE_HOST}:{images.port}")]
    for request in fake.requests_to("anthropic"):
        assert request.json()["messages"][0]["content"][0]["source"] == {"type": "url", "url": url}
    [bedrock] = fake.requests_to("bedrock")
    assert bedrock.model_id == BEDROCK_MODEL
    assert _bedrock_image(bedrock, mode) == _expected_image(mode)


def test_an_openai_client_image_url_reaches_bedrock_as_the_fetched_bytes(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    images: ImageServer,
) -> None:
    provider_credential_set(provider="anthropic", secret=ANTHROPIC_KEY)
    _set_mode("converse")
    fake.add_fault("anthropic", HttpError(status=529))
    client = openai_client(gateway_server, key_holder.plaintext)
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": images.url(IMAGE_PATH)}},
    ]
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    assert raw.parse().choices[0].message.content == "A single pixel."
    assert raw.headers["x-gateway-provider"] == "bedrock"
    assert images.paths == [IMAGE_PATH]
    [bedrock] = fake.requests_to("bedrock")
    body = bedrock.json()
    assert_valid_converse(body, model_id=BEDROCK_MODEL)
    assert body["messages"][0]["content"][1] == _expected_image("converse")


def test_the_image_is_fetched_once_however_many_bedrock_legs_are_tried(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    images: ImageServer,
) -> None:
    routing_rule_save(
        RoutingRule(name="anthropic then two bedrock models", position=1000),
        [
            TargetSpec("anthropic", "", tier=1),
            TargetSpec("bedrock", "", tier=2),
            TargetSpec("bedrock", SECOND_BEDROCK_MODEL, tier=3),
        ],
    )
    _set_mode("invoke")
    fake.add_fault("anthropic", HttpError(status=529))
    fake.add_fault("bedrock", HttpError(status=503, error_type="ServiceUnavailableException"))
    message, headers = _ask(
        anthropic_client(gateway_server, key_holder.plaintext), images.url(IMAGE_PATH), stream=False
    )
    assert message.content[0].text == "A single pixel."
    assert headers["x-gateway-provider"] == "bedrock"
    bedrock_calls = fake.requests_to("bedrock")
    assert [request.model_id for request in bedrock_calls] == [BEDROCK_MODEL, SECOND_BEDROCK_MODEL]
    for request in bedrock_calls:
        assert _bedrock_image(request, "invoke") == _expected_image("invoke")
    assert images.paths == [IMAGE_PATH]


def test_an_https_image_is_fetched_under_its_host_name(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    tls_images: ImageServer,
) -> None:
    """The connection goes to the checked address, but TLS checks the certificate against the
    URL's name (a certificate is never for the address)."""
    _set_mode("converse")
    fake.add_fault("anthropic", HttpError(status=529))
    message, headers = _ask(
        anthropic_client(gateway_server, key_holder.plaintext),
        tls_images.url(IMAGE_PATH),
        stream=False,
    )
    assert message.content[0].text == "A single pixel."
    assert headers["x-gateway-provider"] == "bedrock"
    assert tls_images.requests == [(IMAGE_PATH, f"{IMAGE_HOST}:{tls_images.port}")]
    [bedrock] = fake.requests_to("bedrock")
    assert _bedrock_image(bedrock, "converse") == _expected_image("converse")


@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_an_image_on_a_loopback_address_is_refused_with_a_400_in_the_clients_format(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    loopback_images: ImageServer,
    mode: str,
) -> None:
    _set_mode(mode)
    provider_credential_set(provider="anthropic", secret=ANTHROPIC_KEY)
    invalidate_key_metadata()
    url = loopback_images.loopback_url(IMAGE_PATH)

    fake.add_fault("anthropic", HttpError(status=529))
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(gateway_server, key_holder.plaintext).messages.create(
            model=MODEL, max_tokens=100, messages=_url_image_message(url)
        )
    error = refused.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert (
        "resolves to a loopback address, which the gateway does not fetch from"
        in (error["message"])
    )

    fake.add_fault("anthropic", HttpError(status=529))
    chat = openai_client(gateway_server, key_holder.plaintext)
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    with pytest.raises(openai.BadRequestError) as refused_chat:
        chat.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert refused_chat.value.body["param"] == "messages.0.content.1.source.url"
    assert "loopback address" in refused_chat.value.body["message"]

    assert len(fake.requests_to("anthropic")) == 2  # each request tried Anthropic first
    assert fake.requests_to("bedrock") == []
    assert loopback_images.paths == []
