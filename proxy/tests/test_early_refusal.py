"""Requests refused from their head alone: no body is read for a wrong host, a declared size over
the limit or a bad key, and a body without a declared size is read only up to the limit."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from proxy.tests.conftest import GatewayServer, KeyHolder

HUGE = 300 * 1024 * 1024


def _exchange(
    gateway: GatewayServer, head: str, body_chunks: list[bytes] | None = None
) -> tuple[bytes, float]:
    """Send a request head (and maybe some body), return the first bytes of the answer and how
    long it took to come; the rest of a declared body is never sent."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        for chunk in body_chunks or []:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the gateway answered and closed: it reads no more
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer, time.monotonic() - started


def _head(path: str, *, length: int | None, host: str = "127.0.0.1", extra: str = "") -> str:
    size = (
        f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{size}{extra}\r\n"
    )


# Every way a body could reach the disk: Django's ASGI handler spools a body into a
# SpooledTemporaryFile, which rolls over into a TemporaryFile; multipart uploads go to a
# NamedTemporaryFile; mkstemp is beneath most of them. A TemporaryFile has no name on Linux
# (O_TMPFILE, or unlinked at once), so looking for new files in the temp directory proves nothing.
_TEMP_FILE_FACTORIES = ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp")


@pytest.fixture
def temp_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The temporary files created while the test runs (the gateway serves in this process),
    by the name of the factory called; each is still created, so behaviour is unchanged."""
    created: list[str] = []

    def recording(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
        def create(*args: Any, **kwargs: Any) -> Any:
            created.append(name)
            return factory(*args, **kwargs)

        return create

    for name in _TEMP_FILE_FACTORIES:
        monkeypatch.setattr(tempfile, name, recording(name, getattr(tempfile, name)))
    yield created


def test_a_huge_body_for_an_unknown_key_is_refused_before_it_is_sent(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any, temp_files: list[str]
) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = HUGE * 2  # the key, not the size, must stop it
    answer, _elapsed = _exchange(
        gateway_server,
        _head("/ak/gw_abcdefgh_notarealkeyatall000000000000000000/v1/messages", length=HUGE),
    )
    assert answer.startswith(b"HTTP/1.1 401")
    assert temp_files == []


@pytest.mark.parametrize("path", ["/ak/{key}/v1/messages", "/ak/{key}/v1/chat/completions"])
def test_a_declared_size_over_the_limit_is_refused_before_the_body(
    gateway_server: GatewayServer, key_holder: KeyHolder, path: str
) -> None:
    answer, _ = _exchange(gateway_server, _head(path.format(key=key_holder.plaintext), length=HUGE))
    assert answer.startswith(b"HTTP/1.1 413")


def test_the_openai_bearer_path_refuses_a_bad_key_before_the_body(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any
) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = HUGE * 2
    answer, _ = _exchange(
        gateway_server,
        _head("/v1/chat/completions", length=HUGE, extra="Authorization: Bearer gw_nope\r\n"),
    )
    assert answer.startswith(b"HTTP/1.1 401")


def test_a_chunked_body_is_read_only_up_to_the_limit(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any, temp_files: list[str]
) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = 64 * 1024
    chunk = b"x" * 16384
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    # Up to 8 MiB offered; the gateway answers after the first 64 KiB + 1 byte.
    answer, _ = _exchange(
        gateway_server,
        _head(f"/ak/{key_holder.plaintext}/v1/messages", length=None),
        [framed] * 512,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert temp_files == []


# Paths outside the proxy, served by Django's full stack: the admin, the admin API, a proxy path
# without its /ak/ prefix (a common client misconfiguration) and a path nothing answers.
FULL_STACK_PATHS = ["/admin/login/", "/api/admin/users", "/{key}/v1/messages", "/nowhere"]


@pytest.mark.parametrize("path", FULL_STACK_PATHS)
def test_a_declared_size_over_the_limit_outside_the_proxy_is_refused_before_the_body(
    gateway_server: GatewayServer, key_holder: KeyHolder, temp_files: list[str], path: str
) -> None:
    answer, _ = _exchange(gateway_server, _head(path.format(key=key_holder.plaintext), length=HUGE))
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"content-type: application/json" in answer.lower()
    assert temp_files == []


def test_a_chunked_body_outside_the_proxy_is_read_only_up_to_the_limit(
    gateway_server: GatewayServer, temp_files: list[str]
) -> None:
    from gateway_project.asgi import FULL_STACK_MAX_BODY_BYTES

    chunk = b"x" * 16384
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    chunks = [framed] * (3 * FULL_STACK_MAX_BODY_BYTES // len(chunk)) + [b"0\r\n\r\n"]
    # Three times the limit offered, and ended: read whole, the login page would answer 403
    # (no CSRF token). The gateway answers 413 after the limit + 1 byte.
    answer, _ = _exchange(gateway_server, _head("/admin/login/", length=None), chunks)
    assert answer.startswith(b"HTTP/1.1 413")
    assert temp_files == []


def test_a_body_within_the_limit_outside_the_proxy_reaches_its_view_whole(
    gateway_server: GatewayServer, transactional_db: None, settings: Any, temp_files: list[str]
) -> None:
    from accounts.models import User
    from gateway_project.asgi import FULL_STACK_MAX_BODY_BYTES

    settings.GATEWAY_ADMIN_API_TOKEN = "admin-token-for-the-management-api"
    start = b'{"email":"big@example.com","full_name":"Big Body","padding":"'
    end = b'"}'
    body = start + b"x" * (FULL_STACK_MAX_BODY_BYTES - len(start) - len(end)) + end
    assert len(body) == FULL_STACK_MAX_BODY_BYTES
    head = _head(
        "/api/admin/users",
        length=len(body),
        extra=f"Authorization: Bearer {settings.GATEWAY_ADMIN_API_TOKEN}\r\n",
    )
    # Sent in pieces, as a client's writes arrive: the reader must join them, in order.
    pieces = [body[offset : offset + 65536] for offset in range(0, len(body), 65536)]
    answer, _ = _exchange(gateway_server, head, pieces)
    assert answer.startswith(b"HTTP/1.1 201")
    assert User.objects.get(email="big@example.com").full_name == "Big Body"
    assert temp_files == []


def test_a_host_outside_allowed_hosts_is_refused(
    gateway_server: GatewayServer, key_holder: KeyHolder, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["gateway.example.com"]
    answer, _ = _exchange(
        gateway_server,
        _head(f"/ak/{key_holder.plaintext}/v1/messages", length=2, host="evil.example"),
    )
    assert answer.startswith(b"HTTP/1.1 400")
    ok, _ = _exchange(
        gateway_server,
        _head(f"/ak/{key_holder.plaintext}/v1/messages", length=2, host="gateway.example.com"),
        [b"{}"],
    )
    assert ok.startswith(b"HTTP/1.1 400")  # a JSON body without a model: the proxy's own 400


# What may sit between a fake upstream and a client that reads nothing: the socket buffers of the
# two connections (on Linux up to 4 MB per send buffer, receive buffers that grow with use; about
# 8 MB in all, at most 12 MB seen) and the little the gateway itself holds (uvicorn's write
# buffer, aiohttp's read buffer, a chunk in flight). A gateway that kept reading its upstream
# regardless takes the whole stream.
STALLED_STREAM_MAX_BYTES = 20_000_000


def test_a_client_that_stops_reading_has_its_stream_closed_and_accounted(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: Any,
    settings: Any,
    recorded_events: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The upstream keeps streaming, the client reads nothing: the gateway stops reading the
    upstream once the buffers in between are full (so what it holds per stream stays bounded),
    and after the write timeout it closes the stream (and its upstream request) and records the
    partial usage. It says so in one warning; the server's ERROR line about the unfinished
    response is left out."""
    from proxy.testing.answers import ScriptedAnswer
    from proxy.testing.records import Pacing

    settings.GATEWAY_CLIENT_WRITE_TIMEOUT = 1.0
    fake = fake_upstream_settings
    # About 64 MB of deltas, far more than all the buffers on the way hold. Each delta is its own
    # write (a delta interval above zero): the fake's server takes a write only once the last
    # one left its buffer, so what the fake has sent is what the gateway let through.
    fake.answer = ScriptedAnswer.text("x" * 64_000_000)
    fake.pacing = Pacing.build(text_deltas=8_000, delta_interval_ms=0.01)
    body = (
        b'{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,'
        b'"messages":[{"role":"user","content":"hi"}]}'
    )
    host, port = gateway_server.base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    try:
        head = _head(
            f"/ak/{key_holder.plaintext}/v1/messages",
            length=len(body),
            extra="x-api-key: sk-ant-client\r\nanthropic-version: 2023-06-01\r\n",
        )
        sock.sendall(head.encode() + body)
        # The client reads nothing. Within the write timeout (plus slack for a busy machine)
        # the gateway gives up on it, closes the upstream and records the request.
        deadline = time.monotonic() + 10
        events: list[Any] = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.2)
            events = recorded_events()
    finally:
        sock.close()
    (event,) = events
    assert event.client_disconnected
    assert event.provider == "anthropic"
    # Everything the fake sent, it sent while the client was not reading.
    sent = fake.last_request.body_bytes_sent
    assert 0 < sent <= STALLED_STREAM_MAX_BYTES, f"{sent:,} bytes of the stream left the upstream"
    messages = [record.getMessage() for record in caplog.records]
    assert "client read nothing for 1 s: stream closed" in messages
    assert not [message for message in messages if "without completing response" in message]
