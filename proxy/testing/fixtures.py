"""Pytest fixtures around the fake upstream, for app conftests to import.

    # <app>/tests/conftest.py
    from proxy.testing.fixtures import fake_upstream, fake_upstream_server  # noqa: F401

The fixtures carry explicit names, so they register under those names however they are imported.
`fake_upstream_server` starts one server for the whole session; `fake_upstream` hands it to a test
with scripts, faults and history reset before and after, so tests do not pay for a server start
each. `fake_upstream_settings` also points the gateway's upstream URLs at it.

The provider fakes follow the same pattern: `fake_openai_server` / `fake_openai`,
`fake_gemini_server` / `fake_gemini`, `fake_ollama_server` / `fake_ollama`, and
`fake_providers_settings`, which points `GATEWAY_OPENAI_BASE_URL`, `GATEWAY_GEMINI_BASE_URL` and
`GATEWAY_OLLAMA_BASE_URL` at them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from proxy.testing.fake_upstream import FakeUpstream

if TYPE_CHECKING:
    # Imported where used: the openai and google-genai packages take seconds to import, and every
    # conftest that imports this module would pay for them.
    from proxy.testing.fake_gemini import FakeGemini
    from proxy.testing.fake_ollama import FakeOllama
    from proxy.testing.fake_openai import FakeOpenAI


@pytest.fixture(scope="session", name="fake_upstream_server")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(name="fake_upstream")
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()


@pytest.fixture(name="fake_upstream_settings")
def fake_upstream_settings(fake_upstream: FakeUpstream, settings: Any) -> FakeUpstream:
    """`fake_upstream`, with GATEWAY_ANTHROPIC_BASE_URL and GATEWAY_BEDROCK_ENDPOINT_URL on it."""
    settings.GATEWAY_ANTHROPIC_BASE_URL = fake_upstream.base_url
    settings.GATEWAY_BEDROCK_ENDPOINT_URL = fake_upstream.base_url
    return fake_upstream


# --- the provider fakes (OpenAI, Gemini, Ollama) -------------------------------------------------


@pytest.fixture(scope="session", name="fake_openai_server")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    from proxy.testing.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(name="fake_openai")
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture(scope="session", name="fake_gemini_server")
def fake_gemini_server() -> Iterator[FakeGemini]:
    from proxy.testing.fake_gemini import FakeGemini

    with FakeGemini() as fake:
        yield fake


@pytest.fixture(name="fake_gemini")
def fake_gemini(fake_gemini_server: FakeGemini) -> Iterator[FakeGemini]:
    fake_gemini_server.reset()
    yield fake_gemini_server
    fake_gemini_server.reset()


@pytest.fixture(scope="session", name="fake_ollama_server")
def fake_ollama_server() -> Iterator[FakeOllama]:
    from proxy.testing.fake_ollama import FakeOllama

    with FakeOllama() as fake:
        yield fake


@pytest.fixture(name="fake_ollama")
def fake_ollama(fake_ollama_server: FakeOllama) -> Iterator[FakeOllama]:
    fake_ollama_server.reset()
    yield fake_ollama_server
    fake_ollama_server.reset()


@dataclass
class FakeProviders:
    openai: FakeOpenAI
    gemini: FakeGemini
    ollama: FakeOllama


@pytest.fixture(name="fake_providers_settings")
def fake_providers_settings(
    fake_openai: FakeOpenAI, fake_gemini: FakeGemini, fake_ollama: FakeOllama, settings: Any
) -> FakeProviders:
    """The three provider fakes, reset, with the gateway's upstream URLs pointing at them.

    Each URL is the bare server root, like the settings' defaults (`https://api.openai.com`):
    the paths (`/v1/...`, `/v1beta/...`, `/api/...`) are the gateway's to add.
    """
    settings.GATEWAY_OPENAI_BASE_URL = fake_openai.base_url
    settings.GATEWAY_GEMINI_BASE_URL = fake_gemini.base_url
    settings.GATEWAY_OLLAMA_BASE_URL = fake_ollama.base_url
    return FakeProviders(openai=fake_openai, gemini=fake_gemini, ollama=fake_ollama)
