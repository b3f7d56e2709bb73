"""Runs an ASGI app under uvicorn on a pre-bound socket, in a background thread or the foreground,
and reports every TCP connection opening and closing.

uvicorn tells an ASGI app nothing about connections, so the runner swaps in a subclass of uvicorn's
own HTTP protocol whose `connection_made` / `connection_lost` call the hooks. The hooks run on the
server's event loop. The runner knows nothing about what the app answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import uvicorn

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # httptools is optional in uvicorn; h11 always works
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]

# Longer than common client pools keep idle connections, so the server never closes one a client
# is about to reuse (that race would show up as flaky connection errors in gateway tests).
KEEP_ALIVE_SECONDS = 75
LISTEN_BACKLOG = 2048

Client = tuple[str, int]


class ServerHooks(Protocol):
    """What the runner reports; every call happens on the server's event loop."""

    def connection_made(self, client: Client, transport: asyncio.BaseTransport) -> None: ...

    def connection_lost(self, client: Client) -> None: ...

    def stopping(self) -> None:
        """The server is about to stop: end long waits and close connections now."""


class UvicornRunner:
    """uvicorn serving `app` on host:port (port 0 picks a free one, readable from `port`)."""

    def __init__(self, *, app: Any, hooks: ServerHooks, host: str, port: int) -> None:
        self.app = app
        self.hooks = hooks
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Serve in a daemon thread; returns once uvicorn accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        listener = self._bind()
        server = uvicorn.Server(self._config())
        self._server = server
        self._thread = threading.Thread(
            target=self._serve_in_thread, args=(server, listener), name="fake-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start") from self._thread_error
            time.sleep(0.002)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly: streams in flight are ended and connections closed, not drained."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._begin_stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None
        self._server = None

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM."""
        listener = self._bind()
        self._server = uvicorn.Server(self._config())
        if on_ready is not None:
            on_ready(f"http://{self.host}:{self.port}")
        self._server.run(sockets=[listener])

    def _bind(self) -> socket.socket:
        # Bound and listening before uvicorn starts, so the port is known (and connections queue)
        # from the moment start returns.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(LISTEN_BACKLOG)
        self.port = listener.getsockname()[1]
        return listener

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            http=self._protocol_class(),
            lifespan="off",
            log_config=None,  # leave the host process's logging configuration alone
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=1,
            backlog=LISTEN_BACKLOG,
        )

    def _protocol_class(self) -> type[asyncio.Protocol]:
        hooks = self.hooks

        class CountingProtocol(_BaseProtocol):
            """uvicorn's HTTP protocol, reporting connection open/close to the hooks."""

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                if self.client is not None:
                    hooks.connection_made(self.client, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.client is not None:
                    hooks.connection_lost(self.client)
                super().connection_lost(exc)

        return CountingProtocol

    def _serve_in_thread(self, server: uvicorn.Server, listener: socket.socket) -> None:
        loop = _new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[listener]))
        except BaseException as error:  # start_in_thread reports it; a thread cannot raise to it
            self._thread_error = error
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            listener.close()

    def _begin_stop(self) -> None:
        self.hooks.stopping()
        if self._server is not None:
            self._server.should_exit = True
            # Do not wait for keep-alive connections or streams: tests want a prompt stop.
            self._server.force_exit = True


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
