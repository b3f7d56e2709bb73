"""Limits and budgets hold across real gateway processes: two uvicorn processes on one
PostgreSQL database and one Redis (run with DATABASE_URL and REDIS_URL set), or one process on
the embedded default (SQLite, no Redis). Keys and rules are made by manage.py in processes of
their own; the upstream is the fake Anthropic server, slowed so that requests overlap.

What is measured is printed: how many of 20 concurrent requests each limit admitted, and how
far a budget worth one request was overspent (the bound stated in the README: less than one
request's reservation, i.e. nothing when reservations cover the actual usage).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_django
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command

from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay

pytestmark = pytest.mark.django_db(transaction=True)

_BASE_DIR = Path(django_settings.BASE_DIR)
TOKENS_PER_REQUEST = 14  # what the fake reports for every answer: 11 in, 3 out
CONCURRENT = 20


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_url() -> str | None:
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        return None
    user = database.get("USER") or "postgres"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


@dataclass
class Deployment:
    env: dict[str, str]
    data_dir: Path
    fake: FakeUpstream

    def manage(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, str(_BASE_DIR / "manage.py"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=_BASE_DIR,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def create_key(self, email: str) -> tuple[str, int]:
        plaintext = self.manage("create_access_key", email, "--create-user").splitlines()[-1]
        key_id = self.shell(
            "from accounts.models import AccessKey;"
            f"print(AccessKey.objects.get(prefix={plaintext[:11]!r}).pk)"
        )
        return plaintext, int(key_id.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None
) -> Iterator[Deployment]:
    tmp_path = tmp_path_factory.mktemp("governance")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    with FakeUpstream() as fake:
        env.update(
            DEBUG="true",
            GATEWAY_DATA_DIR=str(tmp_path),
            SECRET_KEY="test-secret-key-for-the-processes-0123456789",
            GATEWAY_KEY_HASH_SECRET="test-hash-secret-for-the-processes",
            GATEWAY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            GATEWAY_ANTHROPIC_BASE_URL=fake.base_url,
            GATEWAY_BEDROCK_ENDPOINT_URL=fake.base_url,
        )
        deployment = Deployment(env=env, data_dir=tmp_path, fake=fake)
        database_url = _database_url()
        if database_url is not None:
            env["DATABASE_URL"] = database_url
            env["REDIS_URL"] = django_settings.REDIS_URL
        else:
            deployment.manage("migrate", "--noinput")
        yield deployment


@pytest.fixture(scope="module")
def gateways(
    deployment: Deployment, django_db_blocker: pytest_django.DjangoDbBlocker
) -> Iterator[list[str]]:
    """Two gateway processes with PostgreSQL and Redis; one on the embedded default."""
    shared = "REDIS_URL" in deployment.env and bool(deployment.env["REDIS_URL"])
    count = 2 if shared else 1
    processes: list[tuple[subprocess.Popen[bytes], str]] = []
    logs = []
    try:
        for index in range(count):
            port = _free_port()
            log = (deployment.data_dir / f"gateway{index}.log").open("w")
            logs.append(log)
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "gateway_project.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--lifespan",
                    "off",
                    "--log-level",
                    "warning",
                ],
                env=deployment.env,
                cwd=_BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append((process, f"http://127.0.0.1:{port}"))
        for process, url in processes:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "gateway exited"
                try:
                    httpx.get(f"{url}/ak/not-a-key/v1/models", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "gateway did not start"
                    time.sleep(0.1)
        yield [url for _, url in processes]
    finally:
        for process, _ in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for log in logs:
            log.close()
        if "DATABASE_URL" in deployment.env:
            # On PostgreSQL the processes share the test database, and on their way out they
            # write the usage they still held: after the last test's tables were emptied, so
            # the next module's first test would find it. Empty them again.
            with django_db_blocker.unblock():
                call_command("flush", interactive=False, verbosity=0)


def _fire(gateways: list[str], key: str, count: int = CONCURRENT) -> list[httpx.Response]:
    """``count`` requests at once, spread over the gateway processes in turn."""
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}

    def post(index: int) -> httpx.Response:
        url = f"{gateways[index % len(gateways)]}/ak/{key}/v1/messages"
        return httpx.post(url, json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def _report(capsys: pytest.CaptureFixture[str], gateways: list[str], what: str) -> None:
    with capsys.disabled():
        print(f"\n[governance, {len(gateways)} process(es)] {what}")  # noqa: T201


def _slow_fake(deployment: Deployment) -> None:
    deployment.fake.reset()
    deployment.fake.answer = ScriptedAnswer.text(
        "ok", usage={"input_tokens": 11, "output_tokens": 3}
    )
    deployment.fake.set_default_fault("anthropic", Delay(delay=0.5))


def test_a_10_rpm_limit_admits_exactly_10_of_20_concurrent_requests(
    deployment: Deployment, gateways: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key, key_id = deployment.create_key("rpm@example.com")
    deployment.shell(
        "from governance.services import rate_limit_create;"
        f"rate_limit_create(scope='access_key', access_key_id={key_id}, requests_per_minute=10)"
    )
    _slow_fake(deployment)
    time.sleep(1.5)  # the change reaches the running processes (key-cache invalidation)
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.2)
    answers = _fire(gateways, key)
    statuses = sorted(answer.status_code for answer in answers)
    _report(capsys, gateways, f"10 RPM: {statuses.count(200)} of {CONCURRENT} admitted")
    assert statuses == [200] * 10 + [429] * 10
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1


def test_a_budget_worth_one_request_is_not_overspent_by_20_concurrent_requests(
    deployment: Deployment, gateways: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key, key_id = deployment.create_key("budget@example.com")
    deployment.shell(
        "from governance.services import budget_create;"
        f"budget_create(scope='access_key', access_key_id={key_id}, period='day',"
        f" limit_tokens={TOKENS_PER_REQUEST})"
    )
    _slow_fake(deployment)
    time.sleep(1.5)
    answers = _fire(gateways, key)
    admitted = sum(1 for answer in answers if answer.status_code == 200)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert admitted + len(refused) == CONCURRENT
    overspend = admitted * TOKENS_PER_REQUEST - TOKENS_PER_REQUEST
    # The bound: less than one request's reservation (its estimated input + max_tokens 50);
    # the reservation covers the actual 14 tokens, so no second request can start.
    _report(
        capsys, gateways, f"budget of 1 request: {admitted} admitted, overspend {overspend} tokens"
    )
    assert admitted == 1
    assert refused[0].json()["error"]["type"] == "rate_limit_error"
    # Once settled, the budget is spent: later requests are refused too.
    deadline = time.monotonic() + 5
    while True:
        later = _fire(gateways, key, count=len(gateways))
        if all(answer.status_code == 429 for answer in later):
            break
        assert time.monotonic() < deadline
    assert "resets at" in later[0].json()["error"]["message"]
