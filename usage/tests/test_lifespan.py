"""The ASGI lifespan that drains the usage writer when the server stops, and the writer's close.

The end-to-end check (a real gateway stopped by SIGTERM mid-stream) is in
gateway_project/tests/test_run_gateway.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from usage import lifespan
from usage.models import UsageEvent
from usage.recording import Spool, UsageRecord, UsageWriter


class _Lifespan:
    """Plays the server's side of the lifespan protocol."""

    def __init__(self, *messages: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait({"type": message})
        self.sent: list[str] = []

    async def receive(self) -> MutableMapping[str, Any]:
        return await self.inbox.get()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message["type"])


async def test_shutdown_drains_the_usage_writer_before_it_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []
    server = _Lifespan("lifespan.startup", "lifespan.shutdown")

    def close(timeout: float) -> None:
        assert server.sent == ["lifespan.startup.complete"]  # not yet complete
        calls.append(timeout)

    monkeypatch.setattr(lifespan, "close_usage_writer", close)
    app = lifespan.with_usage_drain(_no_http, timeout=4.0)
    await app({"type": "lifespan"}, server.receive, server.send)
    assert server.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert len(calls) == 1 and 0.5 <= calls[0] <= 4.0


async def test_a_failing_drain_still_lets_the_server_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(timeout: float) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(lifespan, "close_usage_writer", broken)
    server = _Lifespan("lifespan.startup", "lifespan.shutdown")
    await lifespan.with_usage_drain(_no_http)({"type": "lifespan"}, server.receive, server.send)
    assert server.sent[-1] == "lifespan.shutdown.complete"
    assert "drain at shutdown failed" in caplog.text


async def test_other_scopes_go_to_the_wrapped_application() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    app = lifespan.with_usage_drain(inner)
    await app({"type": "http"}, _never, _never)
    await app({"type": "websocket"}, _never, _never)
    assert seen == ["http", "websocket"]


async def test_the_served_application_is_the_gateway_with_a_lifespan(monkeypatch: Any) -> None:
    from gateway_project.asgi import application

    drained: list[float] = []

    async def drain(timeout: float) -> None:
        drained.append(timeout)

    monkeypatch.setattr(lifespan, "drain_usage_events", drain)
    server = _Lifespan("lifespan.startup", "lifespan.shutdown")
    await application({"type": "lifespan"}, server.receive, server.send)
    assert server.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert len(drained) == 1


class ASGIHandler:
    """Named like Django's handler: its request task has the same qualified name."""

    def __init__(self) -> None:
        self.unwound: list[str] = []

    def handle(self) -> asyncio.Task[None]:
        async def process_request() -> None:
            try:
                await asyncio.sleep(60)  # a stream the server gave up on
            finally:
                self.unwound.append("recorded")

        return asyncio.create_task(process_request())


async def test_requests_still_open_at_shutdown_are_cut_and_unwind_before_the_drain() -> None:
    handler = ASGIHandler()
    request = handler.handle()
    other = asyncio.create_task(asyncio.sleep(60))  # not a request: left alone
    await asyncio.sleep(0)

    assert await lifespan.cut_open_requests(timeout=2) == 1
    assert request.cancelled()
    assert handler.unwound == ["recorded"]
    assert not other.done()
    other.cancel()
    assert await lifespan.cut_open_requests(timeout=2) == 0


@pytest.mark.django_db(transaction=True)
def test_events_recorded_after_the_close_go_straight_to_the_spool(tmp_path: Path) -> None:
    writer = UsageWriter(Spool(tmp_path / "spool"))
    writer.submit(UsageRecord(provider="anthropic", request_id="gwreq_before"))
    writer.close(timeout=5)
    assert list(UsageEvent.objects.values_list("request_id", flat=True)) == ["gwreq_before"]

    writer.submit(UsageRecord(provider="anthropic", request_id="gwreq_after"))
    assert writer._thread is None  # no thread that the exiting process would not wait for
    assert writer.spool.depth() == 1
    assert writer.spool.replay() == 1
    assert UsageEvent.objects.filter(request_id="gwreq_after").exists()


async def _no_http(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the lifespan scope must not reach the application")


async def _never() -> Any:
    raise AssertionError("not called")
