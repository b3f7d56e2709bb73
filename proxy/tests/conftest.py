"""Fixtures for the proxy tests: the gateway under a real ASGI server, keys and credentials."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from accounts.keycache import invalidate_key_metadata, key_cache
from accounts.models import User
from accounts.services import access_key_create, provider_credential_set
from gateway_project import redis as shared_redis
from proxy.circuit import _REDIS_PREFIX, circuits
from proxy.models import ModelMapping
from proxy.routing import model_map
from proxy.testing.fixtures import (  # noqa: F401 (fixtures)
    fake_gemini,
    fake_gemini_server,
    fake_ollama,
    fake_ollama_server,
    fake_openai,
    fake_openai_server,
    fake_providers_settings,
    fake_upstream,
    fake_upstream_server,
    fake_upstream_settings,
)
from proxy.throttle import auth_throttle
from usage.recording import flush_usage_events


def reset_shared_state() -> int:
    """Forget every circuit's shared state in Redis (the tests' clean slate)."""
    client = shared_redis.sync_client()
    if client is None:
        return 0
    keys = list(client.scan_iter(match=_REDIS_PREFIX + "*", count=200))
    if keys:
        client.delete(*keys)
    return len(keys)


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@dataclass
class GatewayServer:
    base_url: str
    server: uvicorn.Server | None = None

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being served: an OpenAI client stops reading at
        ``[DONE]``, a moment before the gateway has finished and recorded that request."""
        deadline = time.monotonic() + timeout
        while self.server is not None and self.server.server_state.tasks:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def key_url(self, key: str) -> str:
        return f"{self.base_url}/ak/{key}"


_running: list[GatewayServer] = []


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[GatewayServer]:
    """The real ASGI application served by uvicorn on 127.0.0.1, for the whole session."""
    from gateway_project.asgi import application

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        application, lifespan="off", log_level="warning", loop="asyncio", http="h11"
    )
    server = _ThreadedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("gateway server did not start")
        time.sleep(0.02)
    gateway = GatewayServer(base_url=f"http://127.0.0.1:{port}", server=server)
    _running.append(gateway)
    yield gateway
    _running.remove(gateway)
    server.should_exit = True
    thread.join(10)


@pytest.fixture(autouse=True)
def _fresh_proxy_state() -> Iterator[None]:
    key_cache.reset()
    circuits.reset()
    reset_shared_state()
    auth_throttle.reset()
    model_map.invalidate()
    yield
    for gateway in _running:
        gateway.wait_idle()
    flush_usage_events()  # no event of this test may land in the next one's database
    key_cache.reset()
    circuits.reset()
    model_map.invalidate()


@dataclass
class KeyHolder:
    user: User
    key_id: int
    plaintext: str


def _seeded_mappings() -> dict[str, str]:
    migration = importlib.import_module("proxy.migrations.0002_seed_model_mappings")
    return dict(migration.SEED)


@pytest.fixture
def key_holder(transactional_db: None) -> Iterator[KeyHolder]:
    # Transactional tests empty every table afterwards, the migration's seed rows included.
    for name, model_id in _seeded_mappings().items():
        ModelMapping.objects.get_or_create(
            anthropic_model=name, defaults={"bedrock_model_id": model_id}
        )
    user = User.objects.create_user(email="dev@example.com")
    key, plaintext = access_key_create(user=user, label="laptop")
    yield KeyHolder(user=user, key_id=key.id, plaintext=plaintext)
    # Before the database is emptied: no event of this test may land in the next one's.
    for gateway in _running:
        gateway.wait_idle()
    flush_usage_events()


@pytest.fixture
def bedrock_credential(key_holder: KeyHolder, settings: object) -> None:
    provider_credential_set(
        provider="bedrock", secret="bedrock-api-key-0123456789", region="us-west-2"
    )
    invalidate_key_metadata()


@pytest.fixture
def recorded_events() -> object:
    """Call to flush the usage writer and get the recorded events, oldest first.

    `recorded_events(count)` waits (up to 5 s) until there are at least `count`: an OpenAI client
    stops reading at ``[DONE]``, which may reach it just before the gateway has recorded the
    request. What it returns then is all there is, so a test still sees one event too many.
    """
    from usage.models import UsageEvent

    def fetch(count: int = 0) -> list[UsageEvent]:
        deadline = time.monotonic() + 5
        while True:
            flush_usage_events()
            events = list(UsageEvent.objects.order_by("occurred_at", "id"))
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    return fetch
