"""The one place providers are registered: kind → instance (healthchecks' transport registry).

A new provider is a package under ``proxy/providers/`` and one line here.
"""

from __future__ import annotations

from proxy.providers.anthropic import AnthropicProvider
from proxy.providers.base import Provider
from proxy.providers.bedrock import BedrockProvider
from proxy.providers.gemini import GeminiProvider
from proxy.providers.generic import GenericProvider
from proxy.providers.ollama import OllamaProvider
from proxy.providers.openai import OpenAIProvider

PROVIDERS: dict[str, Provider] = {
    provider.kind: provider
    for provider in (
        AnthropicProvider(),
        BedrockProvider(),
        OpenAIProvider(),
        GeminiProvider(),
        OllamaProvider(),
        GenericProvider(),
    )
}


def provider_for(kind: str) -> Provider:
    return PROVIDERS[kind]
