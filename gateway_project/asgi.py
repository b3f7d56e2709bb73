"""ASGI entry point (`gateway_project.asgi:application`), served by uvicorn.

The proxy routes under /ak/ and /v1/ skip Django's middleware and its per-request thread context: they
use no session, CSRF, authentication or messages (the key in the path is the credential), and
each of those sync-capable middlewares would cost thread hops on every proxied request.
Everything else (admin, API, health) goes through the full stack.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

full_application = get_asgi_application()


class ProxyRoutesHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and no per-request thread."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's handler wraps this in a ThreadSensitiveContext, which gives each request a
        # thread of its own; the proxy's few database calls do not need one.
        await self.handle(scope, receive, send)


proxy_application = ProxyRoutesHandler()
# The key-holding clients' paths: /ak/<key>/... and the OpenAI-compatible /v1/...
PROXY_PREFIXES = ("/ak/", "/v1/")


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(PROXY_PREFIXES):
        await proxy_application(scope, receive, send)
    else:
        await full_application(scope, receive, send)
