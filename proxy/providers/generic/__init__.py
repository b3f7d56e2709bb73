"""Any OpenAI-compatible server (vLLM, Together, Groq, OpenRouter, LM Studio...).

A ``generic`` credential is a base URL with an optional key, stored under a name of the admin's
choosing; clients address it as ``<name>/<model>``, and several can be configured. The wire is
OpenAI's, so everything but where the requests go is ``proxy.providers.openai``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from proxy.planning import Leg


class GenericProvider(OpenAIProvider):
    """The credential's endpoint is the base URL: there is no default server to fall back to."""

    kind = "generic"
    label = "OpenAI-compatible server"

    def base_url(self, leg: Leg) -> str:
        assert leg.credential is not None  # planning never makes a generic leg without one
        base = leg.credential.endpoint_url.rstrip("/")
        # Base URLs are often written with the /v1 the paths add again.
        return base[: -len("/v1")] if base.endswith("/v1") else base
