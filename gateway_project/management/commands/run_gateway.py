"""`manage.py run_gateway`: the whole system in one command (what `./gateway start` runs).

Prepares the installation (migrate, collectstatic, the first admin account), then runs three
child processes and supervises them:

- web: uvicorn serving ``gateway_project.asgi:application``, the gateway's ASGI application with a
  lifespan whose shutdown drains the usage writer (uvloop, httptools, access log off because
  proxy paths carry access keys);
- worker: ``celery -A gateway_project worker``;
- beat: ``celery -A gateway_project beat``.

Worker and beat are separate processes, as in production (docker-compose.yml), rather than one
``worker -B``: Celery recommends against embedding beat outside development, and one code path
for both set-ups means the embedded default exercises what production runs. On the embedded
broker (a folder in GATEWAY_DATA_DIR) both processes simply share the folder.

SIGINT or SIGTERM stops the children with SIGTERM, the graceful stop of both uvicorn and Celery
(a Celery worker stopped by SIGINT reports failure); a second signal kills them. The web server
finishes open requests for GATEWAY_SHUTDOWN_GRACE_SECONDS, cuts the rest, then writes (or
spools) the usage events of all of them before it exits; a child still running after that, and
a margin, is killed. When any child
exits on its own, the others are stopped and the command exits non-zero. Children run in their
own process groups (so a terminal Ctrl+C reaches them once, through this process) and, on Linux,
get SIGTERM if this process dies without stopping them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from gateway_project.management.commands.ensure_admin import (
    admin_account_ensure,
    admin_email,
    admin_password_file,
    describe_admin_login,
)
from usage.recording import EXIT_DRAIN_SECONDS

ASGI_APPLICATION = "gateway_project.asgi:application"
# After the web server's grace period (open streams are cut then), the usage drain may take
# this long, and the children get a margin on top before they are killed.
USAGE_DRAIN_SECONDS = EXIT_DRAIN_SECONDS
STOP_MARGIN_SECONDS = 5.0
_POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def child_commands(
    *,
    host: str,
    port: int,
    workers: int,
    with_worker: bool,
    with_beat: bool,
    log_level: str = "INFO",
    shutdown_grace: int = 30,
    python: str = sys.executable,
) -> list[Child]:
    """The command lines of the web server, the Celery worker and beat."""
    children = [
        Child(
            "web",
            [
                python,
                "-m",
                "uvicorn",
                ASGI_APPLICATION,
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--lifespan",
                "on",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                # The client address is decided by the gateway itself (GATEWAY_CLIENT_IP_HEADER,
                # GATEWAY_TRUSTED_PROXY_HOPS), never by uvicorn trusting X-Forwarded-For.
                "--no-proxy-headers",
                "--timeout-graceful-shutdown",
                str(shutdown_grace),
                "--log-level",
                log_level.lower(),
            ],
        )
    ]
    celery = [python, "-m", "celery", "-A", "gateway_project"]
    if with_worker:
        children.append(
            Child(
                "worker",
                [
                    *celery,
                    "worker",
                    "--loglevel",
                    log_level,
                    # Nothing to synchronise with on start and no peers to gossip with: both
                    # only add broker traffic, which the embedded broker pays for in file I/O.
                    "--without-mingle",
                    "--without-gossip",
                ],
            )
        )
    if with_beat:
        children.append(Child("beat", [*celery, "beat", "--loglevel", log_level]))
    return children


def display_url(host: str, port: int) -> str:
    """The address to print: a wildcard bind is reached through the loopback address."""
    if host in {"0.0.0.0", "", "::"}:  # noqa: S104 - comparing, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def describe_database() -> str:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"SQLite {database['NAME']}"
    host = database.get("HOST") or "local socket"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"PostgreSQL {database.get('NAME')} on {host}{port}"


def describe_broker() -> str:
    url: str = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        return f"embedded (files in {settings.GATEWAY_DATA_DIR / 'broker'})"
    # Credentials stay out of the banner.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _death_signal_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when the supervisor goes away.

    libc is looked up here, in the parent: the hook runs between fork and exec, where loading a
    library could wait forever on a lock some other thread held at the fork.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def stop_grace_seconds() -> float:
    """How long the children get after the stop signal before they are killed: the web
    server's grace for open requests, the usage drain after it, and a margin."""
    return settings.GATEWAY_SHUTDOWN_GRACE_SECONDS + USAGE_DRAIN_SECONDS + STOP_MARGIN_SECONDS


def _kill_group(child: Child) -> None:
    if child.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


class Supervisor:
    """Starts the children, waits for a signal or a death, then stops them all."""

    def __init__(
        self,
        children: list[Child],
        *,
        out: Callable[[str], None],
        grace: float | None = None,
    ) -> None:
        self.children = children
        self.out = out
        self.grace = stop_grace_seconds() if grace is None else grace
        self.signals: list[int] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        """Exit status: 0 after a stop signal, 1 when a child exited on its own."""
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            try:
                self._start_all()
            except BaseException:
                # One child could not be started: the ones already running must not linger.
                self._stop_all(signal.SIGTERM)
                raise
            failed = self._wait_for_signal_or_death()
            if failed is not None:
                assert failed.process is not None
                self.out(
                    f"{failed.name} exited with status {failed.process.returncode}; "
                    "stopping the others."
                )
            else:
                self.out(f"Received {signal.Signals(self.signals[0]).name}; stopping.")
            self._stop_all(signal.SIGTERM)
            return 1 if failed is not None else 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _start_all(self) -> None:
        preexec = _death_signal_hook()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for child in self.children:
            if self.signals:
                return
            child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                child.argv,
                cwd=settings.BASE_DIR,
                env=env,
                process_group=0,
                preexec_fn=preexec,  # one system call, nothing that takes a lock
            )
            self.out(f"started {child.name} (pid {child.pid})")

    def _wait_for_signal_or_death(self) -> Child | None:
        while not self.signals:
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    return child
            time.sleep(_POLL_SECONDS)
        return None

    def _stop_all(self, signum: int) -> None:
        for child in self.children:
            if child.running():
                assert child.process is not None
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)
        signals_seen = len(self.signals)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.process is None:
                continue
            while child.running():
                # A second Ctrl+C, or the grace running out, kills instead of waiting.
                if len(self.signals) > signals_seen or time.monotonic() >= deadline:
                    self.out(f"killing {child.name} (pid {child.pid})")
                    _kill_group(child)
                    child.process.wait()
                    break
                time.sleep(_POLL_SECONDS)
            # Grandchildren (uvicorn's workers, Celery's pool) that outlived their parent.
            _kill_group(child)
            self.out(f"{child.name} stopped (status {child.process.returncode})")


class Command(BaseCommand):
    help = (
        "Run the whole gateway: migrate, collect static files, create the first admin account, "
        "then run the ASGI web server, the Celery worker and Celery beat until stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind the web server.")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server.")
        parser.add_argument(
            "--workers", type=int, default=1, help="Web server worker processes (default 1)."
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not run a Celery worker.")
        parser.add_argument("--no-beat", action="store_true", help="Do not run Celery beat.")

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        workers: int = options["workers"]
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, got {port}.")
        if workers < 1:
            raise CommandError(f"--workers must be at least 1, got {workers}.")

        verbosity = max(0, options["verbosity"] - 1)
        self._say("migrating the database")
        call_command("migrate", interactive=False, verbosity=verbosity)
        self._say("collecting static files")
        call_command("collectstatic", interactive=False, verbosity=verbosity)
        base_url = display_url(host, port)
        login = admin_account_ensure(email=admin_email(), password_file=admin_password_file())
        # The children open their own connections; this process needs none while it waits, nor
        # a connection pool's threads while it forks them.
        for connection in connections.all():
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()

        children = child_commands(
            host=host,
            port=port,
            workers=workers,
            with_worker=not options["no_worker"],
            with_beat=not options["no_beat"],
            log_level=settings.GATEWAY_LOG_LEVEL,
            shutdown_grace=settings.GATEWAY_SHUTDOWN_GRACE_SECONDS,
        )
        self._banner(
            base_url,
            login_lines=describe_admin_login(login, admin_url=f"{base_url}/admin/"),
            children=children,
        )
        status = Supervisor(children, out=self._say).run()
        if status:
            raise CommandError("The gateway stopped because a process exited.", returncode=status)

    def _say(self, line: str) -> None:
        self.stdout.write(f"[run_gateway] {line}")
        self.stdout.flush()

    def _banner(self, base_url: str, *, login_lines: list[str], children: list[Child]) -> None:
        names = ", ".join(child.name for child in children)
        rule = "=" * 78
        lines = [
            rule,
            "LLM gateway",
            f"Web:       {base_url}/   (health: {base_url}/healthz)",
            *login_lines,
            f"Clients:   ANTHROPIC_BASE_URL={base_url}/ak/<access key>",
            f"           OpenAI SDK: base_url={base_url}/v1, api_key=<access key>",
            f"Database:  {describe_database()}",
            f"Broker:    {describe_broker()}",
            f"Data:      {settings.GATEWAY_DATA_DIR}",
            f"Processes: {names}",
            "Stop with Ctrl+C.",
            rule,
        ]
        for line in lines:
            self.stdout.write(line)
        self.stdout.flush()
