"""Building blocks of the long reliability runs: a cuttable TCP forwarder, the gateway and the
fake upstream as processes, an asyncio load client, and the served-versus-recorded count.

Everything listens on 127.0.0.1 only. The gateway runs the way ``manage.py run_gateway`` starts
its web worker (uvicorn, uvloop, httptools, one worker, no access log, the lifespan that drains
the usage writer at shutdown) with DEBUG off and secrets generated for the run, in a data
directory of its own (so its usage spool is its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MODEL = "claude-sonnet-4-6"


def say(line: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a TCP forwarder that can be cut ---------------------------------------------------------


class Forwarder:
    """Forwards 127.0.0.1:<port> to a target, on an event loop of its own (a thread).

    ``cut("refuse")`` closes the listening socket and resets every open connection: clients get
    "connection refused", as when the server is down. ``cut("hang")`` resets open connections
    and then accepts new ones without ever answering, as behind a dead network path.
    ``restore()`` forwards again on the same port.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.mode = "forward"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        self._call(self._listen())
        return self

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        try:
            if self.mode == "hang":
                await reader.read()  # never answer; wait for the client to give up
                return
            try:
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._links.add(target_writer)
            try:
                await asyncio.gather(
                    self._pipe(reader, target_writer), self._pipe(target_reader, writer)
                )
            finally:
                self._links.discard(target_writer)
                target_writer.close()
        finally:
            self._links.discard(writer)
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    async def _cut(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.transport.abort()  # a reset, not a polite close
        self._links.clear()

    async def _restore(self) -> None:
        self.mode = "forward"
        for link in list(self._links):  # connections left hanging
            link.transport.abort()
        if self._server is None:
            await self._listen()

    def cut(self, mode: str = "refuse") -> None:
        if mode not in ("refuse", "hang"):
            raise ValueError("mode is refuse or hang")
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def stop(self) -> None:
        self._call(self._cut("refuse"))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --- the scratch database --------------------------------------------------------------------


def database_url(url: str, database: str, port: int | None = None) -> str:
    """``url`` naming another database (and, given ``port``, another port on the same host)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if port is not None:
        netloc = netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit((parts.scheme, netloc, "/" + database, "", ""))


def database_drop(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        connection.execute(drop.format(sql.Identifier(database)))


def database_recreate(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    database_drop(admin_url, database)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


# --- processes -------------------------------------------------------------------------------


def gateway_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """A production-like environment: DEBUG off, fresh secrets, plain logs for reading."""
    from cryptography.fernet import Fernet

    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
    }
    environment.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "GATEWAY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "GATEWAY_KEY_HASH_SECRET": secrets.token_urlsafe(40),
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_LOG_FORMAT": "plain",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.update(overrides)
    return environment


def manage(environment: dict[str, str], *arguments: str, stdin: str | None = None) -> str:
    """Run a manage.py command; its stdout."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [PYTHON, str(REPO / "manage.py"), *arguments],
        env=environment,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {arguments[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process itself (not its group), as a supervisor would."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_process(
    name: str, command: Sequence[str], environment: dict[str, str], log_dir: Path
) -> Process:
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(  # noqa: S603 - fixed command lines
        list(command),
        env=environment,
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop() ends it and its children
    )
    return Process(name, popen, log)


def wait_http(url: str, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - http on 127.0.0.1
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: the server is up
                return
            time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer at {url}:\n{process.log_tail()}")


def start_fake(log_dir: Path, environment: dict[str, str], *args: str) -> tuple[Process, str]:
    """The fake Anthropic + Bedrock upstream as a process; returns it and its base URL."""
    port = free_port()
    process = start_process(
        "fake-upstream",
        [PYTHON, "-m", "proxy.testing.fake_upstream", "--port", str(port), *args],
        environment,
        log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", process)
    return process, url


def start_gateway(
    log_dir: Path, environment: dict[str, str], *, port: int | None = None, name: str = "gateway"
) -> tuple[Process, str]:
    port = port or free_port()
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "gateway_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "on",
        "--timeout-graceful-shutdown",
        "30",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = start_process(name, command, environment, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", process)
    return process, url


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --- load ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What the clients saw: answers by status (and by phase), and the request ids the gateway
    gave, including those of streams the client hung up on."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_phase: dict[str, Counter[str]] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    own_errors: Counter[str] = field(default_factory=Counter)  # 5xx the gateway made itself
    transport_errors: Counter[str] = field(default_factory=Counter)
    incomplete_streams: int = 0
    hang_ups: int = 0
    # request id -> "phase, streamed or not, hung up or status": to trace a lost event
    details: dict[str, str] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def count(self, phase: str, outcome: str) -> None:
        self.by_phase.setdefault(phase, Counter())[outcome] += 1


async def run_load(
    *,
    url: str,
    headers: dict[str, str],
    concurrency: int,
    until: Callable[[], bool],
    stream_share: float = 0.25,
    hang_up_share: float = 0.0,
    phase: Callable[[], str] = lambda: "",
    body: dict[str, Any] | None = None,
) -> LoadResult:
    """``concurrency`` clients sending requests until ``until()``: a share of them streamed, and
    a share of the streams abandoned after their first chunk."""
    result = LoadResult()
    payload = body or {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(number: int) -> None:
            count = 0
            while not until():
                count += 1
                ticket = (count * 7919 + number * 104729) % 1000 / 1000
                stream = ticket < stream_share
                hang_up = stream and ticket < stream_share * hang_up_share
                await _request(
                    client,
                    url,
                    headers,
                    {**payload, "stream": stream},
                    result,
                    phase=phase(),
                    hang_up=hang_up,
                )

        await asyncio.gather(*(one(number) for number in range(concurrency)))
    return result


async def _request(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    result: LoadResult,
    *,
    phase: str,
    hang_up: bool,
) -> None:
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            request_id = response.headers.get("x-gateway-request-id", "")
            if request_id:
                result.request_ids.append(request_id)
            kind = f"{phase}, {'stream' if payload.get('stream') else 'whole'}"
            if hang_up and response.status_code == 200:
                async for _chunk in response.aiter_raw():
                    break  # leaving the block closes the connection mid-stream
                result.hang_ups += 1
                result.count(phase, "hung up")
                result.details[request_id] = f"{kind}, hung up"
                return
            content = await response.aread()
            result.details[request_id] = f"{kind}, {response.status_code}"
    except httpx.HTTPError as exc:
        result.transport_errors[type(exc).__name__] += 1
        result.count(phase, type(exc).__name__)
        return
    result.statuses[response.status_code] += 1
    result.count(phase, str(response.status_code))
    if response.status_code >= 500 and "x-gateway-provider" not in response.headers:
        try:
            message = json.loads(content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = content[:80].decode(errors="replace")
        result.own_errors[f"{response.status_code} {message}"] += 1
    streamed = payload.get("stream") and response.status_code == 200
    if streamed and b"event: message_stop" not in content:
        result.incomplete_streams += 1
        result.count(phase, "stream ended in an error event")


# --- counting --------------------------------------------------------------------------------


def recorded_request_ids(database_url: str) -> list[str]:
    """The request ids of every usage event in the database (read directly, not through any
    forwarder)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute("SELECT request_id FROM usage_usageevent").fetchall()
    return [row[0] for row in rows]


def spool_depth(data_dir: Path) -> int:
    total = 0
    for path in (data_dir / "spool").glob("usage-*.jsonl*"):
        with path.open("rb") as handle:
            total += sum(1 for _ in handle)
    return total


def wait_recorded(
    database_url: str, served_ids: Sequence[str], data_dir: Path, timeout: float
) -> list[str]:
    """The recorded request ids, once every served one is among them and the spool is empty
    (the writer batches every quarter second and replays the spool every few seconds), or
    when ``timeout`` is up."""
    served = set(served_ids)
    deadline = time.monotonic() + timeout
    while True:
        recorded = recorded_request_ids(database_url)
        done = served <= set(recorded) and spool_depth(data_dir) == 0
        if done or time.monotonic() > deadline:
            return recorded
        time.sleep(1)


@dataclass
class Tally:
    served: int
    recorded: int
    lost: int
    doubled: int
    unexpected: int  # events whose request id no client saw (e.g. a client gave up)
    lost_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"requests served {self.served}, events recorded {self.recorded}, "
            f"events lost {self.lost}"
        )


def tally(served_ids: Sequence[str], recorded_ids: Sequence[str]) -> Tally:
    served = set(served_ids)
    recorded = Counter(recorded_ids)
    lost = sorted(served - set(recorded))
    return Tally(
        served=len(served),
        recorded=sum(recorded[request_id] > 0 for request_id in served),
        lost=len(lost),
        doubled=sum(count - 1 for count in recorded.values() if count > 1),
        unexpected=len(set(recorded) - served),
        lost_ids=lost,
    )
