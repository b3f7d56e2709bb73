"""One request/response in flight on the fake upstream, and the bytes its streams are made of.

`Exchange` writes a response through ASGI `send`: a whole body, or a stream of frames with paced
deltas and an optional mid-stream fault; it can also close the connection from the server side.
Its waits end early when the client disconnects or the server stops, and it records on its
`RecordedRequest` what was sent and how the exchange ended.

The frame helpers turn stream events (from `answers.py`) into SSE frames, ConverseStream frames,
or InvokeModel `chunk` frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

from proxy.testing.answers import StreamEvent
from proxy.testing.eventstream import event_frame
from proxy.testing.records import OUTCOME_PENDING, OUTCOME_SERVER_CLOSED, Headers, RecordedRequest

# Bedrock pads every event payload with a random-length "p" key so sizes leak nothing.
_PADDING_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# A stream body as frames, each flagged when it is a delta (only deltas are paced).
Frames = list[tuple[bytes, bool]]

# A mid-stream fault at a frame position: the last bytes to send, or None to cut the connection.
StreamFault = tuple[int, bytes | None]


# One encoder for every payload: json.dumps with options builds a new encoder on each call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_bytes(data: Any) -> bytes:
    """Compact JSON, as both upstreams write it."""
    return _JSON.encode(data).encode("utf-8")


def sse_event(event_type: str, data: Any) -> bytes:
    """One SSE frame as Anthropic writes it."""
    return b"event: " + event_type.encode("ascii") + b"\ndata: " + json_bytes(data) + b"\n\n"


def padded(payload: dict[str, Any]) -> bytes:
    length = 1 + secrets.randbelow(len(_PADDING_ALPHABET))
    return json_bytes({**payload, "p": _PADDING_ALPHABET[:length]})


def sse_frames(events: list[StreamEvent]) -> Frames:
    return [(sse_event(name, data), name == "content_block_delta") for name, data in events]


def converse_frames(events: list[StreamEvent]) -> Frames:
    return [(event_frame(name, padded(data)), name == "contentBlockDelta") for name, data in events]


def invoke_frames(events: list[StreamEvent]) -> Frames:
    """Each Anthropic event base64-encoded in the `bytes` of a `chunk` frame."""
    return [
        (
            event_frame("chunk", padded({"bytes": base64.b64encode(json_bytes(data)).decode()})),
            name == "content_block_delta",
        )
        for name, data in events
    ]


def _encode_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Exchange:
    """Server side of one request (lives on the event loop).

    `closed` turns true when the connection is lost, for whatever reason; `wake()` is then called
    by the server so that waits end at once.
    """

    __slots__ = ("_waiters", "closed", "is_stopping", "record", "send", "transport")

    def __init__(
        self,
        *,
        record: RecordedRequest,
        send: Callable[[dict[str, Any]], Any],
        transport: asyncio.BaseTransport | None,
        is_stopping: Callable[[], bool],
    ) -> None:
        self.record = record
        self.send = send
        self.transport = transport
        self.is_stopping = is_stopping
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    def wake(self) -> None:
        for waiter in self._waiters:
            _resolve(waiter)

    async def _sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)

    async def pause(self, seconds: float) -> bool:
        """Wait; False if the connection went away or the server is stopping meanwhile
        (in which case the caller must stop answering)."""
        if not self.closed and not self.is_stopping():
            await self._sleep(seconds)
        if self.closed:
            return False
        if self.is_stopping():
            await self.close_connection()
            return False
        return True

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole response with a content-length."""
        if self.closed:
            return
        self.record.status = status
        encoded = _encode_headers(headers)
        encoded.append((b"content-length", str(len(body)).encode("ascii")))
        await self.send({"type": "http.response.start", "status": status, "headers": encoded})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def stream(
        self,
        headers: Headers,
        frames: Frames,
        *,
        delta_interval: float,
        fault: StreamFault | None = None,
    ) -> None:
        """A chunked 200 response of `frames`, `delta_interval` seconds between deltas.

        Frames due at the same moment go out in one write (a client must cope with several events
        in a chunk anyway, and a benchmark baseline should not pay a write per event). With
        `fault=(position, final)`, the frames from `position` on (clipped to the end) are replaced
        by `final` and the response ends there, or the connection is cut if `final` is None.
        """
        if self.closed:
            return
        end = len(frames) if fault is None else min(fault[0], len(frames))
        self.record.status = 200
        await self.send(
            {"type": "http.response.start", "status": 200, "headers": _encode_headers(headers)}
        )
        due: list[bytes] = []
        delta_seen = False
        for frame, is_delta in frames[:end]:
            if is_delta and delta_seen and delta_interval > 0:
                if not await self._write(due, more=True):
                    return
                if not await self.pause(delta_interval):
                    return
            delta_seen = delta_seen or is_delta
            due.append(frame)
        final = b"" if fault is None else fault[1]
        if final is None:
            if await self._write(due, more=True):
                await self.close_connection()
            return
        await self._write(due, more=False, tail=final)

    async def _write(self, frames: list[bytes], *, more: bool, tail: bytes = b"") -> bool:
        """Send the due frames (and a final tail) as one chunk; False if the client is gone."""
        if self.closed:
            return False
        if frames or tail or not more:
            body = b"".join(frames) + tail
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
            self.record.events_sent += len(frames)
            self.record.body_bytes_sent += len(body)
            frames.clear()
        return True

    async def close_connection(self) -> None:
        """Close the connection from the server side, whatever was sent so far."""
        if self.record.outcome == OUTCOME_PENDING:
            self.record.outcome = OUTCOME_SERVER_CLOSED
        if self.closed or self.transport is None:
            return
        self.transport.close()
        # Return only once uvicorn knows the connection is gone, so it does not report the
        # unfinished response as an application error.
        while not self.closed:
            await self._sleep(1.0)
