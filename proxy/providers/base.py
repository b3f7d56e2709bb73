"""What every provider implements, and what the request flow hands it.

A provider answers one *leg* of a plan (``proxy.planning.Leg``: provider, upstream model,
credential) for one client *call* (``Call``: the client's surface, its body, headers and the
request's context). It returns either the client's response, already in the client's format, or
a ``LegFailure`` when nothing has reached the client yet and the next leg may be tried — the one
failure type of healthchecks' transports, here with ``retryable`` always true: anything a
provider does not want retried it answers itself.

Providers register in ``proxy.providers.registry``; each lives in its own package.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from django.http import HttpResponse
from django.http.response import HttpResponseBase

from proxy.headers import client_response_headers
from proxy.pools.classify import context_overflow
from proxy.translation.errors import MappedError, error_body
from proxy.translation.hub import JSON

if TYPE_CHECKING:
    from proxy.context import ProxyContext
    from proxy.planning import Leg
    from proxy.surfaces import Surface


@dataclass
class RawReply:
    """An upstream's own error reply, kept so a client of the same format gets it unchanged."""

    status: int
    headers: dict[str, str]
    body: bytes

    def as_response(self) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status)
        for name, value in client_response_headers(self.headers.items()):
            response[name] = value
        return response


@dataclass
class LegFailure:
    """A leg that failed before the first byte reached the client.

    ``reason`` is short and stable (``anthropic_529``, ``connect_error``, ``openai_429``...): it
    becomes ``x-gateway-fallback-reason`` of the next leg and a metrics label. ``error`` is the
    failure in the hub's (Anthropic's) error shape, rendered into the client's format when this
    failure is what the client finally gets; ``raw`` the upstream's own reply, for a client that
    speaks the upstream's format. ``retry_at`` (epoch seconds) opens the circuit until then.
    """

    reason: str
    error: MappedError | None = None
    raw: RawReply | None = None
    retry_at: float | None = None
    # Counts toward the leg's circuit (a missing credential or an unmappable model does not).
    upstream_failed: bool = True

    @property
    def has_reply(self) -> bool:
        return self.error is not None or self.raw is not None


def gateway_error(status: int, error_type: str, message: str) -> MappedError:
    return MappedError(status=status, body=error_body(error_type, message), headers={})


def transport_failure(exc: BaseException) -> LegFailure:
    """A connection-level failure (no HTTP answer) as a retryable leg failure."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        reason = (
            "connect_timeout" if isinstance(exc, httpx.ConnectTimeout) else "first_byte_timeout"
        )
        return LegFailure(reason=reason)
    if isinstance(exc, httpx.ConnectError):
        return LegFailure(reason="connect_error")
    return LegFailure(reason="upstream_error")


def no_answer_error(provider: str, failure: LegFailure) -> MappedError:
    """The gateway's own error for a failure that brought no upstream reply."""
    label = provider.capitalize() if provider != "openai" else "OpenAI"
    if failure.reason in ("first_byte_timeout", "connect_timeout"):
        return gateway_error(504, "timeout_error", f"{label} did not answer in time.")
    return gateway_error(529, "overloaded_error", f"{label} could not be reached.")


@dataclass
class Call:
    """One client request as every leg sees it.

    ``data`` is the client's parsed body; ``body`` its exact bytes (for passthrough);
    ``headers`` the client's end-to-end headers, lower-cased. The hub (Anthropic Messages) form
    of the request is computed once, on first use, by the surface.
    """

    surface: Surface
    context: ProxyContext
    data: JSON
    body: bytes
    headers: dict[str, str]
    _hub: JSON | None = field(default=None, repr=False)
    # The hub request with its URL images fetched, once a leg that needs bytes asked for it
    # (proxy.providers.media.call_with_inlined_images).
    inlined_hub: JSON | None = field(default=None, repr=False)
    # Whether another leg follows the one being tried (bounds how long a leg may take to start).
    has_next_leg: bool = False
    # Whether the leg being tried uses a member of a key pool: an error that condemns the key
    # (a refused key, an exhausted quota) is then a LegFailure, so that another member may
    # answer, rather than the client's answer.
    pooled: bool = False
    # Whether a context-window error of this leg moves on to the next one (a routing rule's
    # plan, whose later targets may have larger windows), instead of being the client's answer.
    context_failover: bool = False

    def overflow_moves_on(self, status: int, body: Any) -> bool:
        """An error that says the request is too long, when a next leg may take it."""
        return self.context_failover and self.has_next_leg and context_overflow(status, body)

    def hub_request(self) -> JSON:
        """The request as an Anthropic Messages body; raises TranslationError."""
        if self._hub is None:
            self._hub = self.surface.hub_request(self.data)
        return self._hub

    @property
    def stream(self) -> bool:
        return self.context.stream


class Provider:
    """Base class of the upstream providers (one instance per kind, stateless).

    ``wire`` names the format the upstream speaks; when it equals the client surface's wire the
    provider passes bytes through instead of translating.
    """

    kind: str = ""
    wire: str = ""
    label: str = ""

    async def generate(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        """Answer a messages / chat / completions call."""
        raise NotImplementedError

    async def count_tokens(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        """Answer Anthropic's count_tokens; providers without an endpoint estimate locally."""
        from proxy.providers.estimate import estimated_count_response

        return estimated_count_response(call, leg)

    async def embed(self, leg: Leg, call: Call) -> HttpResponseBase | LegFailure:
        return call.surface.error_response(
            400,
            "invalid_request_error",
            f"{self.label} does not serve embeddings through the gateway.",
            param="model",
        )

    async def list_models(self, leg: Leg) -> list[str]:
        """Model ids the upstream offers (without the provider prefix)."""
        return []


def retry_at_now_plus(headers: dict[str, str] | httpx.Headers) -> float | None:
    """``retry-after`` (seconds or ms) as an absolute time, for providers without reset headers."""
    from proxy.circuit import retry_at_from_headers

    return retry_at_from_headers(dict(headers), time.time())
