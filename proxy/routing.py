"""Where a fallback request goes: the Bedrock target for a requested model and a key.

``bedrock_target`` returns a ``BedrockTarget`` (model ID, endpoint, API mode, credential) or a
``NoFallback`` saying why there is none. The model map (``ModelMapping``) is small and read whole
into the process, refreshed every MAP_TTL seconds, so routing costs no query on the hot path.
This is the seam for rule-based routing later: a decision object computed from the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.keycache import KeyMetadata, ResolvedCredential
from proxy.translation.model_ids import normalize_requested_model

MAP_TTL = 30.0
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class BedrockTarget:
    model_id: str
    endpoint: str
    api_mode: str
    credential_id: int
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NoFallback:
    reason: str
    detail: str


class ModelMap:
    def __init__(self) -> None:
        self._map: dict[str, str] = {}
        self._loaded_at = -MAP_TTL

    def _load(self) -> dict[str, str]:
        from proxy.models import ModelMapping

        return {
            normalize_requested_model(name): model_id
            for name, model_id in ModelMapping.objects.filter(enabled=True).values_list(
                "anthropic_model", "bedrock_model_id"
            )
        }

    async def get(self, requested_model: str) -> str | None:
        now = time.monotonic()
        if now - self._loaded_at >= MAP_TTL:
            self._map = await sync_to_async(self._load)()
            self._loaded_at = now
        return self._map.get(normalize_requested_model(requested_model))

    def names(self) -> list[str]:
        return list(self._map)

    def invalidate(self) -> None:
        self._loaded_at = -MAP_TTL


model_map = ModelMap()


def bedrock_endpoint(credential: ResolvedCredential) -> str:
    if credential.endpoint_url:
        return credential.endpoint_url.rstrip("/")
    region = credential.region or DEFAULT_REGION
    return settings.GATEWAY_BEDROCK_ENDPOINT_URL.replace("{region}", region).rstrip("/")


async def bedrock_target(metadata: KeyMetadata, requested_model: str) -> BedrockTarget | NoFallback:
    credential = metadata.credentials.get("bedrock")
    if credential is None:
        return NoFallback("no_bedrock_credential", "no Bedrock credential applies to this key")
    if credential.error:
        return NoFallback("bedrock_credential_unusable", credential.error)
    model_id = await model_map.get(requested_model) if requested_model else None
    if model_id is None:
        model_id = credential.fallback_model or None
    if model_id is None:
        return NoFallback(
            "no_model_mapping",
            f"model {requested_model!r} has no Bedrock mapping and the credential sets no "
            "fallback model",
        )
    return BedrockTarget(
        model_id=model_id,
        endpoint=bedrock_endpoint(credential),
        api_mode=credential.api_mode,
        credential_id=credential.id,
        secret=credential.secret,
    )
