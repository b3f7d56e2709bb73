"""Helpers shared by the reliability tests (``test_reliability_*.py``), and tests of the helpers.

- The gateway's event loop (the uvicorn thread of ``gateway_server``): run a coroutine in it,
  count its tasks, rebuild its upstream HTTP client after a timeout setting changed (the client
  takes its timeouts when it is built).
- ``PrivateRedis``: a redis-server of the test's own, which it may kill, freeze and restart
  without touching the Redis other tests use.
- ``LoadRunner``: client threads sending requests through the gateway until stopped.
- SSE parsing, the Anthropic error shape, and ``report_counts`` for figures CI must show.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import redis

from proxy import http_client

_T = TypeVar("_T")

# Every error type the gateway itself makes or relays (Anthropic's list of error types).
ANTHROPIC_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
        "billing_error",
    }
)


# --- the gateway's event loop ---------------------------------------------------------------


def gateway_loop() -> asyncio.AbstractEventLoop:
    """The running event loop of the in-process gateway server.

    Found through the upstream HTTP client registry, which holds one client per serving loop:
    the gateway must have proxied at least one request to an upstream.
    """
    loops = [loop for loop, _client in http_client._clients.values() if loop.is_running()]
    if not loops:
        raise LookupError("the gateway has not proxied a request yet")
    return loops[-1]


def run_in_gateway(coroutine: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
    """Run a coroutine on the gateway's loop from the test thread and return its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, gateway_loop()).result(timeout)


async def _task_count() -> int:
    return len(asyncio.all_tasks()) - 1  # not counting the task that counts


def gateway_task_count() -> int:
    """How many asyncio tasks are alive in the gateway's loop."""
    return run_in_gateway(_task_count())


def rebuild_upstream_client() -> None:
    """Close the gateway's upstream client: the next request builds one with current settings."""
    for loop, client in list(http_client._clients.values()):
        if loop.is_running() and not client.is_closed:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)


# --- a private Redis server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server on a free port of 127.0.0.1, without persistence.

    ``kill`` ends it abruptly (connections refused afterwards), ``freeze``/``thaw`` stop and
    continue it (connections hang), ``start`` brings it back on the same port, empty.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self._process = subprocess.Popen(  # noqa: S603 - fixed command line
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self._process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a frozen server must die too
            self._process.kill()
        self._process.wait(10)
        self._process = None

    def freeze(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)


# --- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One request of a load run: its status (0 for a transport error) and what came back."""

    status: int
    request_id: str
    provider: str
    body: bytes
    content_type: str
    error: str = ""


@dataclass
class LoadRunner:
    """``concurrency`` client threads each sending ``body`` to ``url`` until ``stop``."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    concurrency: int = 8
    timeout: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> LoadRunner:
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stopping.is_set():
                outcome = self._one(client)
                with self._lock:
                    self.outcomes.append(outcome)

    def _one(self, client: httpx.Client) -> Outcome:
        try:
            response = client.post(self.url, json=self.body, headers=self.headers)
        except httpx.HTTPError as exc:
            return Outcome(0, "", "", b"", "", error=f"{type(exc).__name__}: {exc}")
        return Outcome(
            status=response.status_code,
            request_id=response.headers.get("x-gateway-request-id", ""),
            provider=response.headers.get("x-gateway-provider", ""),
            body=response.content,
            content_type=response.headers.get("content-type", ""),
        )

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        """Until at least ``count`` requests have been answered in all."""
        deadline = time.monotonic() + timeout
        while self.done < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.done} of {count} requests answered")
            time.sleep(0.01)

    def stop(self) -> list[Outcome]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        with self._lock:
            return list(self.outcomes)


# --- response shapes ------------------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, Any]]:
    """The (event name, decoded data) pairs of an SSE body."""
    events: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name = ""
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if name or data:
            events.append((name, json.loads("\n".join(data)) if data else None))
    return events


def anthropic_error(body: bytes | str, content_type: str = "application/json") -> dict[str, Any]:
    """The decoded error body; fails unless it is Anthropic's error shape."""
    assert content_type.startswith("application/json"), (content_type, body[:300])
    data = json.loads(body)
    assert isinstance(data, dict), data
    assert data.get("type") == "error", data
    error = data.get("error")
    assert isinstance(error, dict), data
    assert error.get("type") in ANTHROPIC_ERROR_TYPES, data
    assert isinstance(error.get("message"), str) and error["message"], data
    return data


def assert_error_response(
    response: httpx.Response, status: int | None = None, error_type: str | None = None
) -> dict[str, Any]:
    if status is not None:
        assert response.status_code == status, response.text[:500]
    data = anthropic_error(response.content, response.headers.get("content-type", ""))
    if error_type is not None:
        assert data["error"]["type"] == error_type, data
    return data


# --- reporting ------------------------------------------------------------------------------


def report_counts(capsys: pytest.CaptureFixture[str], title: str, **counts: object) -> str:
    """Write ``[reliability] title: name value, ...`` straight to the terminal, past pytest's
    output capture, so that CI logs show it whether or not ``-s`` was given."""
    line = f"[reliability] {title}: " + ", ".join(
        f"{name.replace('_', ' ')} {value}" for name, value in counts.items()
    )
    with capsys.disabled():
        sys.stdout.write("\n" + line + "\n")
        sys.stdout.flush()
    return line


# --- tests of the helpers -------------------------------------------------------------------


def test_sse_events_parses_frames_and_multiline_data() -> None:
    text = (
        'event: message_start\ndata: {"type":"message_start"}\n\n'
        "event: ping\r\ndata: {}\r\n\r\n"
        'event: error\ndata: {"type":"error",\ndata: "error":{"type":"api_error"}}\n\n'
    )
    assert sse_events(text) == [
        ("message_start", {"type": "message_start"}),
        ("ping", {}),
        ("error", {"type": "error", "error": {"type": "api_error"}}),
    ]


def test_anthropic_error_refuses_other_shapes() -> None:
    good = b'{"type":"error","error":{"type":"api_error","message":"boom"}}'
    assert anthropic_error(good)["error"]["type"] == "api_error"
    for bad, content_type in [
        (b"<html>Server Error</html>", "text/html"),
        (b'{"detail":"Not Found"}', "application/json"),
        (b'{"type":"error","error":{"type":"made_up","message":"x"}}', "application/json"),
        (b'{"type":"error","error":{"type":"api_error","message":""}}', "application/json"),
    ]:
        with pytest.raises(AssertionError):
            anthropic_error(bad, content_type)


def test_private_redis_can_be_killed_and_restarted_on_its_port() -> None:
    server = PrivateRedis()
    server.start()
    try:
        client = server.client()
        client.set("k", "v")
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.start()
        assert client.get("k") is None  # no persistence: it comes back empty
        client.close()
    finally:
        server.kill()
