"""Real gateway processes for tests that must cross a process boundary: a deployment's environment
and `manage.py` runner, and uvicorn workers serving `gateway_project.asgi` on it.

The deployment mirrors the test process's database: on PostgreSQL the processes share the test
database (already migrated) and its Redis; on SQLite, whose test database lives in this process's
memory, they get the embedded default (a database file in their own data directory, migrated
here, and no Redis). Used by the invalidation, governance and key-pool process tests; what each
test does with the processes stays in its module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from django.conf import settings as django_settings

BASE_DIR = Path(django_settings.BASE_DIR)
# Variables of the test process that must not leak into the deployment's: the deployment sets
# its own database and Redis, and the processes load the default settings module.
_NOT_INHERITED = frozenset(
    {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
)
START_TIMEOUT = 60.0
# The processes' data lives and dies with the test run: fixed secrets will do.
_THROWAWAY_SECRETS = {
    "SECRET_KEY": "test-secret-key-for-the-processes-0123456789",
    "GATEWAY_KEY_HASH_SECRET": "test-hash-secret-for-the-processes",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_database_url() -> str | None:
    """The test database as a URL for other processes; None for SQLite, whose test database
    lives in this process's memory."""
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
    """The environment every process of one test module runs with, and its data directory."""

    env: dict[str, str]
    data_dir: Path

    @property
    def shared(self) -> bool:
        """Several processes can share state (PostgreSQL and Redis), not only one on SQLite."""
        return bool(self.env.get("REDIS_URL"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`manage.py` with these arguments, in a process of its own; its failure is returned."""
        return subprocess.run(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=BASE_DIR,
            timeout=120,
            check=False,
        )

    def manage(self, *args: str) -> str:
        """`manage.py` with these arguments, which must succeed; its standard output."""
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def create_key(self, email: str) -> str:
        """A new access key of a new user, in plaintext."""
        return self.manage("create_access_key", email, "--create-user").splitlines()[-1]

    def key_id(self, plaintext: str) -> int:
        printed = self.shell(
            "from accounts.models import AccessKey;"
            f"print(AccessKey.objects.get(prefix={plaintext[:11]!r}).pk)"
        )
        return int(printed.strip().splitlines()[-1])


def make_deployment(data_dir: Path, **env: str) -> Deployment:
    """A deployment on the test database (see the module's docstring), with the secrets it needs
    and `env` on top (upstream URLs, cache lifetimes)."""
    environment = {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}
    environment.update(_THROWAWAY_SECRETS)
    environment.update(
        DEBUG="true",
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        **env,
    )
    deployment = Deployment(env=environment, data_dir=data_dir)
    database_url = process_database_url()
    if database_url is not None:
        environment["DATABASE_URL"] = database_url  # the test database, migrated already
        if django_settings.REDIS_URL:
            environment["REDIS_URL"] = django_settings.REDIS_URL
    else:
        deployment.manage("migrate", "--noinput")
    return deployment


@contextmanager
def gateway_processes(deployment: Deployment, count: int) -> Iterator[list[str]]:
    """`count` uvicorn workers serving the gateway on free ports, once each answers; their base
    URLs. They are terminated (killed if they linger) on the way out; each logs to a file of the
    data directory, shown when one exits before it answers."""
    with ExitStack() as stack:
        processes: list[tuple[subprocess.Popen[bytes], str, Path]] = []
        for index in range(count):
            port = free_port()
            log_path = deployment.data_dir / f"gateway{index}.log"
            log = stack.enter_context(log_path.open("w"))
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
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_end, process)
            processes.append((process, f"http://127.0.0.1:{port}", log_path))
        for process, url, log_path in processes:
            _wait_until_serving(process, url, log_path)
        yield [url for _, url, _ in processes]


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"gateway exited: {log_path.read_text()}"
        try:
            # Any answer will do (this key does not exist): the worker is serving.
            httpx.get(f"{url}/ak/not-a-key/v1/models", timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"gateway did not start: {log_path.read_text()}"
            time.sleep(0.1)


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
