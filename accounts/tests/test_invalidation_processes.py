"""A change made in one process reaches a running gateway in another within two seconds, in every
deployment shape: the embedded default (SQLite, no Redis) and PostgreSQL with Redis (run this
module with DATABASE_URL and REDIS_URL set).

Real processes: the gateway is a uvicorn worker serving gateway_project.asgi (or, for credentials,
which the gateway's answers do not show without an upstream, a small process looking its key up
in a loop), the changes are made by manage.py commands, each its own process, on one database.
Keys are cached for five minutes here, so only the invalidation can explain a change seen within
seconds.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from django.conf import settings as django_settings

from proxy.testing.processes import (
    BASE_DIR,
    Deployment,
    free_port,
    gateway_processes,
    make_deployment,
)

pytestmark = pytest.mark.django_db(transaction=True)

PROPAGATION_LIMIT = 2.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, django_db_setup: None) -> Deployment:
    """One database and environment for the module's processes (the changes each test makes
    concern its own users and keys)."""
    return make_deployment(
        tmp_path_factory.mktemp("deployment"),
        GATEWAY_KEY_CACHE_TTL="300",
        # Nothing may reach the internet: Anthropic is a closed local port.
        GATEWAY_ANTHROPIC_BASE_URL=f"http://127.0.0.1:{free_port()}",
    )


@dataclass
class Gateway:
    base_url: str

    def status(self, key: str) -> int:
        return httpx.get(f"{self.base_url}/ak/{key}/v1/models", timeout=10).status_code


@pytest.fixture(scope="module")
def gateway(deployment: Deployment) -> Iterator[Gateway]:
    with gateway_processes(deployment, 1) as urls:
        yield Gateway(base_url=urls[0])


def _seconds_until_refused(gateway: Gateway, key: str, limit: float = 10.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if gateway.status(key) == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def _report(capsys: pytest.CaptureFixture[str], what: str, seconds: float) -> float:
    # Shown in the test output, so that CI logs say how close to the limit each shape runs.
    with capsys.disabled():
        engine = django_settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        redis = "redis" if django_settings.REDIS_URL else "no redis"
        print(f"\n[propagation] {what} ({engine}, {redis}): {seconds:.2f} s")  # noqa: T201
    return seconds


def _warm(gateway: Gateway, key: str) -> None:
    # Served twice from the cache: the key is known to the running process before the change.
    for _ in range(3):
        assert gateway.status(key) == 200


def test_a_key_revoked_by_the_command_is_refused_by_a_running_gateway_within_2s(
    deployment: Deployment, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    key = deployment.create_key("dev@example.com")
    _warm(gateway, key)
    deployment.manage("revoke_access_key", key[:11])
    seconds = _seconds_until_refused(gateway, key)
    assert _report(capsys, "revoke_access_key", seconds) < PROPAGATION_LIMIT


def test_a_user_deactivated_elsewhere_loses_their_keys_within_2s(
    deployment: Deployment, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    key = deployment.create_key("leaver@example.com")
    other = deployment.create_key("stayer@example.com")
    _warm(gateway, key)
    _warm(gateway, other)
    deactivated = deployment.manage(
        "shell",
        "--no-imports",
        "-c",
        "from accounts.selectors import user_get_by_email; "
        "from accounts.services import user_set_active; "
        "print(user_set_active(user=user_get_by_email('leaver@example.com'), active=False))",
    )
    assert deactivated.strip() == "True"
    seconds = _seconds_until_refused(gateway, key)
    assert _report(capsys, "user deactivated", seconds) < PROPAGATION_LIMIT
    assert gateway.status(other) == 200


_WATCHER = """
import asyncio, os, sys, time
from accounts.keycache import key_cache

async def watch():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metadata = await key_cache.lookup(os.environ["WATCHED_KEY"])
        print(",".join(sorted(metadata.credentials)) if metadata else "refused", flush=True)
        await asyncio.sleep(0.05)

asyncio.run(watch())
"""


def test_a_credential_set_by_the_command_reaches_a_running_process_within_2s(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other process here is a small one that looks its key up in a loop, as a gateway
    worker does per request: what it sees is the credentials the proxy would use."""
    key = deployment.create_key("watched@example.com")
    watcher = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, str(BASE_DIR / "manage.py"), "shell", "--no-imports", "-c", _WATCHER],
        env={**deployment.env, "WATCHED_KEY": key},
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line.strip()) for line in watcher.stdout or ()], daemon=True
    ).start()
    try:
        assert lines.get(timeout=60) == ""  # warm: no credentials yet
        deployment.manage(
            "set_provider_credential",
            "generic",
            "--name",
            "vllm",
            "--endpoint",
            "http://vllm:8000",
            "--access-key",
            key[:11],
        )
        set_at = time.monotonic()
        while (line := lines.get(timeout=10)) != "vllm":
            assert line == "", line
        seconds = time.monotonic() - set_at
        assert _report(capsys, "set_provider_credential", seconds) < PROPAGATION_LIMIT
    finally:
        watcher.kill()
        watcher.wait(10)
