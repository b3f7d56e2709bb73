"""`manage.py run_gateway` (what `./gateway start` runs), `ensure_admin` and `./gateway` itself.

The end-to-end tests start the real thing in a subprocess with a temporary data directory and a
free port, on the embedded defaults or, when the test run has DATABASE_URL / REDIS_URL, on a
throwaway PostgreSQL database and the given Redis: they wait for /healthz, log in to the admin
with the printed credentials through Django's login form, fetch a static file, check the worker
and beat, then stop everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from gateway_project.envparse import EnvReader
from gateway_project.management.commands.ensure_admin import (
    DEFAULT_ADMIN_EMAIL,
    admin_account_ensure,
    admin_email,
    describe_admin_login,
)
from gateway_project.management.commands.run_gateway import (
    ASGI_APPLICATION,
    USAGE_DRAIN_SECONDS,
    Child,
    Supervisor,
    child_commands,
    describe_broker,
    display_url,
    stop_grace_seconds,
)
from proxy.testing.fake_upstream import FakeUpstream

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = BASE_DIR / "manage.py"
# Upper bounds for things to happen, not expectations of speed: a slow machine gets there.
START_TIMEOUT = 180.0
STOP_TIMEOUT = 90.0

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


# --- process helpers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid) and fields[0] != "Z":
            found[int(entry.name)] = command_line(int(entry.name))
    return found


def descendants_of(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    queue = [pid]
    while queue:
        for child, cmdline in children_of(queue.pop()).items():
            found[child] = cmdline
            queue.append(child)
    return found


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    details = f"\n--- log ---\n{log.read_text()}" if log is not None else ""
    pytest.fail(f"timed out waiting for {what}{details}")


# --- a running gateway ------------------------------------------------------------------------


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    env: dict[str, str]
    seen: dict[int, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def present() -> bool:
            match = re.search(pattern, self.log(), flags=re.MULTILINE)
            if match:
                found.append(match)
            if self.process.poll() is not None and not match:
                pytest.fail(f"run_gateway exited ({self.process.returncode}):\n{self.log()}")
            return match is not None

        wait_until(present, timeout, f"log line {pattern!r}", self.log_path)
        return found[0]

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"run_gateway exited ({self.process.returncode}):\n{self.log()}")
            try:
                response = httpx.get(f"{self.base_url}/healthz", timeout=2)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json() == {"status": "ok"}

        wait_until(healthy, START_TIMEOUT, "/healthz", self.log_path)

    def record_processes(self) -> dict[int, str]:
        current = descendants_of(self.process.pid)
        self.seen.update(current)
        return current

    def kill_everything(self) -> None:
        for pid in [self.process.pid, *self.seen]:
            if is_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=30)


@pytest.fixture
def gateway_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a fresh installation, on the services this test run uses."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DEBUG": "true",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
    }
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        yield env
        return
    # A database of its own: run_gateway migrates it as an installation would, outside the
    # test database pytest-django manages.
    import psycopg
    from psycopg import sql

    config = EnvReader({"DATABASE_URL": database_url}).db_url("DATABASE_URL", "")
    name = f"{config['NAME']}_run_{uuid.uuid4().hex[:8]}"
    connect = {
        "host": config["HOST"] or None,
        "port": config["PORT"] or None,
        "user": config["USER"] or None,
        "password": config["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**connect) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env["DATABASE_URL"] = urlsplit(database_url)._replace(path=f"/{name}").geturl()
    try:
        yield env
    finally:
        with psycopg.connect(**connect) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def start_gateway(
    tmp_path: Path, gateway_env: dict[str, str]
) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def start(*args: str) -> RunningGateway:
        port = free_port()
        log_path = tmp_path / f"run_gateway-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(MANAGE), "run_gateway", "--port", str(port), *args],
                cwd=tmp_path,  # any working directory will do
                env=gateway_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = RunningGateway(process, log_path, port, gateway_env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill_everything()


def admin_login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    """Log in through Django's admin login form, as a browser would."""
    form = client.get("/admin/login/", params={"next": "/admin/"})
    assert form.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None, form.text
    assert "csrftoken" in client.cookies
    return client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": email,
            "password": password,
            "next": "/admin/",
        },
    )


# --- end to end -------------------------------------------------------------------------------


@linux_only
def test_start_log_in_and_stop(
    start_gateway: Callable[..., RunningGateway], gateway_env: dict[str, str]
) -> None:
    gateway = start_gateway()
    gateway.wait_healthy()

    login = gateway.wait_for_log(r"^Login:\s+(\S+)$")
    password = gateway.wait_for_log(r"^Password:\s+(\S+)$")
    email = login.group(1)
    assert email == DEFAULT_ADMIN_EMAIL
    assert f"{gateway.base_url}/admin/" in gateway.log()
    password_file = Path(gateway_env["GATEWAY_DATA_DIR"]) / "secrets" / "admin_password"
    assert password_file.read_text().strip() == password.group(1)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        wrong = admin_login(client, email, "not-the-password")
        assert wrong.status_code == 200  # the form again, with an error
        assert "Please enter the correct email" in wrong.text

        response = admin_login(client, email, password.group(1))
        assert response.status_code == 302, response.text
        assert response.headers["location"] == "/admin/"
        index = client.get("/admin/")
        assert index.status_code == 200
        assert "Users, keys, providers and usage" in index.text  # the admin index
        assert email in index.text

        css = client.get("/static/admin/css/base.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert client.get("/static/admin/css/no-such-file.css").status_code == 404

    # Worker and beat are up, as children of the command.
    gateway.wait_for_log(r"celery@\S+ ready\.")
    gateway.wait_for_log(r"beat: Starting\.\.\.")
    children = children_of(gateway.process.pid)
    roles = {
        role
        for cmdline in children.values()
        for role in ("uvicorn", "worker", "beat")
        if re.search(rf"\b{role}\b", cmdline)
    }
    assert roles == {"uvicorn", "worker", "beat"}, children
    assert any(ASGI_APPLICATION in cmdline for cmdline in children.values())
    assert len(children) == 3, children

    # A task goes through the broker to the worker.
    sent = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "gateway_project", "call", "celery.accumulate"],
        cwd=BASE_DIR,
        env=gateway_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    task_id = sent.stdout.strip().splitlines()[-1]
    gateway.wait_for_log(rf"Task celery\.accumulate\[{re.escape(task_id)}\] succeeded")

    everything = gateway.record_processes()
    assert len(everything) >= 3
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=STOP_TIMEOUT) == 0, gateway.log()
    assert "Received SIGTERM; stopping." in gateway.log()
    for name in ("web", "worker", "beat"):
        assert f"[run_gateway] {name} stopped" in gateway.log()
    still_running = {pid: cmd for pid, cmd in everything.items() if is_alive(pid)}
    assert not still_running

    # A second start creates no other admin and prints the same login.
    again = subprocess.run(
        [sys.executable, str(MANAGE), "ensure_admin"],
        env=gateway_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Created" not in again.stdout
    assert f"Password:  {password.group(1)}" in again.stdout


@linux_only
def test_a_dying_child_stops_everything(start_gateway: Callable[..., RunningGateway]) -> None:
    gateway = start_gateway("--no-beat")
    gateway.wait_healthy()
    gateway.wait_for_log(r"celery@\S+ ready\.")
    children = children_of(gateway.process.pid)
    assert not any(re.search(r"\bbeat\b", cmdline) for cmdline in children.values())
    (worker,) = [pid for pid, cmdline in children.items() if re.search(r"\bworker\b", cmdline)]
    everything = gateway.record_processes()

    os.kill(worker, signal.SIGKILL)
    assert gateway.process.wait(timeout=STOP_TIMEOUT) == 1, gateway.log()
    log = gateway.log()
    assert f"worker exited with status -{int(signal.SIGKILL)}; stopping the others." in log
    assert "The gateway stopped because a process exited." in log
    assert not [pid for pid in everything if is_alive(pid)]


def _stored_usage(env: dict[str, str], request_id: str) -> list[str]:
    """Where the usage event of ``request_id`` ended up: "database" and/or "spool"."""
    query = "SELECT output_tokens FROM usage_usageevent WHERE request_id = %s"
    if env.get("DATABASE_URL"):
        import psycopg

        with psycopg.connect(env["DATABASE_URL"]) as database:
            rows = database.execute(query, [request_id]).fetchall()
    else:
        import sqlite3

        data = Path(env["GATEWAY_DATA_DIR"]) / "gateway.sqlite3"
        with contextlib.closing(sqlite3.connect(data)) as database:
            rows = database.execute(query.replace("%s", "?"), [request_id]).fetchall()
    found = ["database"] * len(rows)
    for path in (Path(env["GATEWAY_DATA_DIR"]) / "spool").glob("usage-*.jsonl*"):
        found += ["spool" for line in path.read_text().splitlines() if request_id in line]
    return found


def _stream_through_a_stop(
    start_gateway: Callable[..., RunningGateway],
    gateway_env: dict[str, str],
    stop_signal: signal.Signals,
    *,
    text_deltas: int,
) -> tuple[RunningGateway, str, bytes, float]:
    """Start the gateway, stream a slow answer through it, send ``stop_signal`` to run_gateway
    after the first chunk, read on until the stream ends and wait for the exit. Returns the
    gateway, the request id, what the client received and how long it streamed after the
    signal."""
    with FakeUpstream(text_deltas=text_deltas, delta_interval_ms=100) as fake:
        gateway_env["GATEWAY_ANTHROPIC_BASE_URL"] = fake.base_url
        gateway = start_gateway("--no-worker", "--no-beat")
        gateway.wait_healthy()
        created = subprocess.run(
            [sys.executable, str(MANAGE), "create_access_key", "u@example.com", "--create-user"],
            env=gateway_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a slow story."}],
        }
        headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
        url = f"{gateway.base_url}/ak/{key}/v1/messages"
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            assert response.status_code == 200, response.read()
            request_id = response.headers["x-gateway-request-id"]
            chunks = response.iter_bytes()
            received = next(chunks)
            started = time.monotonic()
            gateway.process.send_signal(stop_signal)
            with contextlib.suppress(httpx.HTTPError):  # a cut stream ends without its end
                for chunk in chunks:
                    received += chunk
        streamed_for = time.monotonic() - started
        assert gateway.process.wait(timeout=STOP_TIMEOUT) == 0, gateway.log()
    return gateway, request_id, received, streamed_for


@linux_only
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_a_stream_in_flight_at_a_stop_is_answered_and_its_usage_kept(
    start_gateway: Callable[..., RunningGateway],
    gateway_env: dict[str, str],
    stop_signal: signal.Signals,
) -> None:
    """SIGTERM (or Ctrl+C) while a slow stream is relayed: the client gets the whole answer,
    and the request's usage event is in the database (or the spool) after the exit."""
    gateway, request_id, received, streamed_for = _stream_through_a_stop(
        start_gateway, gateway_env, stop_signal, text_deltas=30
    )
    assert streamed_for > 1.0  # the stop did not cut the stream short
    assert b"event: message_stop" in received, received[-500:]
    assert "killing" not in gateway.log()
    stored = _stored_usage(gateway_env, request_id)
    assert stored and set(stored) <= {"database", "spool"}, gateway.log()


@linux_only
def test_a_stream_longer_than_the_grace_period_is_cut_and_its_usage_kept(
    start_gateway: Callable[..., RunningGateway], gateway_env: dict[str, str]
) -> None:
    gateway_env["GATEWAY_SHUTDOWN_GRACE_SECONDS"] = "2"
    gateway, request_id, received, streamed_for = _stream_through_a_stop(
        start_gateway, gateway_env, signal.SIGTERM, text_deltas=300
    )
    assert streamed_for < 20  # cut after the grace period, not streamed for 30 s
    assert b"event: message_stop" not in received
    assert "killing" not in gateway.log()
    stored = _stored_usage(gateway_env, request_id)
    assert stored and set(stored) <= {"database", "spool"}, gateway.log()


# --- the command's parts ----------------------------------------------------------------------


def test_child_commands() -> None:
    children = child_commands(
        host="0.0.0.0",  # noqa: S104 - only a command line here
        port=9000,
        workers=3,
        with_worker=True,
        with_beat=True,
        python="/venv/bin/python",
    )
    assert [child.name for child in children] == ["web", "worker", "beat"]
    web, worker, beat = (child.argv for child in children)
    assert web[:4] == ["/venv/bin/python", "-m", "uvicorn", ASGI_APPLICATION]
    assert web[web.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    assert web[web.index("--port") + 1] == "9000"
    assert web[web.index("--workers") + 1] == "3"
    # The lifespan's shutdown drains the usage writer before the process exits.
    assert ASGI_APPLICATION == "gateway_project.asgi:application"
    assert web[web.index("--lifespan") + 1] == "on"
    assert web[web.index("--timeout-graceful-shutdown") + 1] == "30"
    assert web[web.index("--loop") + 1] == "uvloop"
    assert web[web.index("--http") + 1] == "httptools"
    assert "--no-access-log" in web
    assert "--no-proxy-headers" in web
    assert worker[:6] == ["/venv/bin/python", "-m", "celery", "-A", "gateway_project", "worker"]
    assert beat[:6] == ["/venv/bin/python", "-m", "celery", "-A", "gateway_project", "beat"]


def test_the_grace_period_comes_from_the_settings(settings: Any) -> None:
    settings.GATEWAY_SHUTDOWN_GRACE_SECONDS = 7
    (web,) = child_commands(
        host="127.0.0.1", port=1, workers=1, with_worker=False, with_beat=False, shutdown_grace=7
    )
    assert web.argv[web.argv.index("--timeout-graceful-shutdown") + 1] == "7"
    # Children are killed only after the grace, the drain and a margin.
    assert stop_grace_seconds() > 7 + USAGE_DRAIN_SECONDS
    assert Supervisor([], out=print).grace == stop_grace_seconds()


def test_child_commands_without_worker_or_beat() -> None:
    only_web = child_commands(
        host="127.0.0.1", port=1, workers=1, with_worker=False, with_beat=False
    )
    assert [child.name for child in only_web] == ["web"]
    no_beat = child_commands(host="127.0.0.1", port=1, workers=1, with_worker=True, with_beat=False)
    assert [child.name for child in no_beat] == ["web", "worker"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104
        ("::", "http://127.0.0.1:8000"),
        ("::1", "http://[::1]:8000"),
        ("gateway.internal", "http://gateway.internal:8000"),
    ],
)
def test_display_url(host: str, expected: str) -> None:
    assert display_url(host, 8000) == expected


def test_banner_hides_broker_credentials() -> None:
    with override_settings(CELERY_BROKER_URL="redis://:hunter2@redis.internal:6379/1"):
        assert describe_broker() == "redis://redis.internal:6379/1"
    with override_settings(CELERY_BROKER_URL="filesystem://"):
        assert describe_broker().startswith("embedded")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("port", 0, "--port must be between 1 and 65535"), ("workers", 0, "--workers must be")],
)
def test_bad_options_are_refused(option: str, value: int, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("run_gateway", **{option: value})


# --- the supervisor with stand-in children ----------------------------------------------------


def python_child(name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code])


def test_supervisor_stops_the_others_when_one_exits() -> None:
    lines: list[str] = []
    sleeper = python_child("sleeper", "import time; time.sleep(120)")
    quitter = python_child("quitter", "import sys; sys.exit(3)")
    status = Supervisor([sleeper, quitter], out=lines.append, grace=30).run()
    assert status == 1
    assert "quitter exited with status 3; stopping the others." in lines
    assert sleeper.process is not None
    assert sleeper.process.returncode == -signal.SIGTERM


def test_supervisor_stops_the_children_on_a_signal() -> None:
    lines: list[str] = []
    sleeper = python_child("sleeper", "import time; time.sleep(120)")
    # Stands in for the operator: signals the supervisor (its parent) once started.
    stopper = python_child(
        "stopper",
        "import os, signal, time; os.kill(os.getppid(), signal.SIGINT); time.sleep(120)",
    )
    previous = signal.getsignal(signal.SIGINT)
    status = Supervisor([sleeper, stopper], out=lines.append, grace=30).run()
    assert status == 0
    assert "Received SIGINT; stopping." in lines
    # Ctrl+C becomes the children's graceful stop signal.
    for child in (sleeper, stopper):
        assert child.process is not None
        assert child.process.returncode == -signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is previous


def test_supervisor_kills_a_child_that_ignores_the_signal(tmp_path: Path) -> None:
    lines: list[str] = []
    ready = tmp_path / "ready"
    stubborn = python_child(
        "stubborn",
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(120)",
    )
    stopper = python_child(
        "stopper",
        "import os, pathlib, signal, time\n"
        f"while not pathlib.Path({str(ready)!r}).exists(): time.sleep(0.05)\n"
        "os.kill(os.getppid(), signal.SIGTERM)\n"
        "time.sleep(120)",
    )
    status = Supervisor([stubborn, stopper], out=lines.append, grace=1).run()
    assert status == 0
    assert stubborn.process is not None
    assert stubborn.process.returncode == -signal.SIGKILL
    assert any(line.startswith("killing stubborn") for line in lines)


# --- the first admin account ------------------------------------------------------------------


@pytest.mark.django_db
def test_first_admin_is_created_once(tmp_path: Path) -> None:
    password_file = tmp_path / "secrets" / "admin_password"
    first = admin_account_ensure(email="ops@example.com", password_file=password_file)
    assert first.created
    assert first.password
    assert password_file.read_text().strip() == first.password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    user = get_user_model().objects.get(email="ops@example.com")
    assert user.is_superuser
    assert user.is_staff
    assert user.check_password(first.password)

    second = admin_account_ensure(email="ops@example.com", password_file=password_file)
    assert not second.created
    assert second.password == first.password
    assert get_user_model().objects.count() == 1
    lines = describe_admin_login(second, admin_url="http://127.0.0.1:8000/admin/")
    assert "Login:     ops@example.com" in lines
    assert f"Password:  {first.password}" in lines


@pytest.mark.django_db
def test_changed_admin_password_is_no_longer_printed(tmp_path: Path) -> None:
    password_file = tmp_path / "admin_password"
    first = admin_account_ensure(email="ops@example.com", password_file=password_file)
    user = get_user_model().objects.get(email="ops@example.com")
    user.set_password("a-new-password-only-the-admin-knows")
    user.save(update_fields=["password"])

    after = admin_account_ensure(email="ops@example.com", password_file=password_file)
    assert after.password is None
    text = "\n".join(describe_admin_login(after, admin_url="/admin/"))
    assert first.password is not None
    assert first.password not in text
    assert "was changed; delete that file" in text

    password_file.unlink()
    gone = admin_account_ensure(email="ops@example.com", password_file=password_file)
    assert describe_admin_login(gone, admin_url="/admin/") == ["Admin:     /admin/"]


@pytest.mark.django_db
def test_no_admin_is_created_when_one_exists(tmp_path: Path) -> None:
    get_user_model().objects.create_superuser(email="boss@example.com", password="x" * 20)
    result = admin_account_ensure(email=DEFAULT_ADMIN_EMAIL, password_file=tmp_path / "pw")
    assert not result.created
    assert result.password is None
    assert not (tmp_path / "pw").exists()
    assert not get_user_model().objects.filter(email=DEFAULT_ADMIN_EMAIL).exists()


@pytest.mark.django_db
def test_admin_email_taken_by_a_plain_user(tmp_path: Path) -> None:
    get_user_model().objects.create_user(email=DEFAULT_ADMIN_EMAIL, password="x" * 20)
    result = admin_account_ensure(email=DEFAULT_ADMIN_EMAIL, password_file=tmp_path / "pw")
    assert result.conflict
    assert not result.created
    text = "\n".join(describe_admin_login(result, admin_url="/admin/"))
    assert "is not a superuser" in text
    assert "createsuperuser" in text
    assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_admin_email_from_the_settings(settings: Any) -> None:
    settings.GATEWAY_ADMIN_EMAIL = ""
    assert admin_email() == DEFAULT_ADMIN_EMAIL
    settings.GATEWAY_ADMIN_EMAIL = " root@example.com "
    assert admin_email() == "root@example.com"
    settings.GATEWAY_ADMIN_EMAIL = "not an email"
    with pytest.raises(CommandError, match="^GATEWAY_ADMIN_EMAIL: not an email address"):
        admin_email()


@pytest.mark.django_db
def test_ensure_admin_command_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(GATEWAY_DATA_DIR=tmp_path):
        call_command("ensure_admin", admin_url="http://gw/admin/")
        first = capsys.readouterr().out
        call_command("ensure_admin", admin_url="http://gw/admin/")
        second = capsys.readouterr().out
    assert f"Created the admin account {DEFAULT_ADMIN_EMAIL}." in first
    assert "Admin:     http://gw/admin/" in first
    password = (tmp_path / "secrets" / "admin_password").read_text().strip()
    assert f"Password:  {password}" in first
    assert "Created" not in second
    assert f"Password:  {password}" in second


# --- ./gateway --------------------------------------------------------------------------------


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The inner test runs need no services: leave the outer run's databases alone.
    outer_only = {"GATEWAY_DATA_DIR", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    env = {
        **{key: value for key, value in os.environ.items() if key not in outer_only},
        # The running interpreter's environment, already installed: no install step here.
        "GATEWAY_VENV": sys.prefix,
        "GATEWAY_SKIP_INSTALL": "1",
    }
    return subprocess.run(
        [str(BASE_DIR / "gateway"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_gateway_script_usage(tmp_path: Path) -> None:
    shown = run_script("help", cwd=tmp_path)
    assert shown.returncode == 0
    for command in ("./gateway start", "./gateway test", "./gateway lint"):
        assert command in shown.stdout
    unknown = run_script("frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown command: frobnicate" in unknown.stderr
    assert run_script(cwd=tmp_path).returncode == 2


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs to run inside a virtualenv")
def test_gateway_test_fails_when_no_test_runs(tmp_path: Path) -> None:
    result = run_script(
        "test",
        "-q",
        "-k",
        "no_test_has_this_name",
        "gateway_project/tests/test_envparse.py",
        cwd=tmp_path,
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert "no test ran" in result.stderr


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs to run inside a virtualenv")
def test_gateway_test_runs_tests_from_any_directory(tmp_path: Path) -> None:
    result = run_script(
        "test",
        "-q",
        "gateway_project/tests/test_envparse.py",
        "-k",
        "parse_fernet_keys_keeps",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
