"""Where a fallback request goes: the Bedrock target for a requested model and a key.

``bedrock_target`` returns a ``BedrockTarget`` (model ID, endpoint, API mode, credential) or a
``NoFallback`` saying why there is none. The model is, in order: the model map's entry for the
requested name, the credential's fallback model, and (GATEWAY_FALLBACK_SAME_FAMILY) the newest
mapped model of the same family — clients such as Claude Code move to new model names before
an admin can map them, and an Opus request is better answered by the newest mapped Opus than not
at all. The model map (``ModelMapping``) is small and read whole
into the process, refreshed every MAP_TTL seconds, so routing costs no query on the hot path.
This is the seam for rule-based routing later: a decision object computed from the request.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from accounts.keycache import KeyMetadata, ResolvedCredential
from proxy.translation.model_ids import claude_version, normalize_requested_model

MAP_TTL = 30.0
T = TypeVar("T")
_RETRY_AFTER_ERROR = 5.0
logger = logging.getLogger(__name__)
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class MappedModel:
    model_id: str
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class BedrockTarget:
    model_id: str
    endpoint: str
    api_mode: str
    credential_id: int
    secret: str = field(repr=False)
    max_output_tokens: int | None = None


_FAMILY = re.compile(r"\b(opus|sonnet|haiku)\b")


def model_family(name: str) -> str | None:
    """``opus``, ``sonnet`` or ``haiku`` for a Claude model name (old and new naming alike)."""
    normalized = normalize_requested_model(name).lower()
    if not normalized.startswith("claude"):
        return None
    match = _FAMILY.search(normalized.replace("-", " "))
    return match.group(1) if match else None


def newest_in_family(mapping: dict[str, MappedModel], requested: str) -> MappedModel | None:
    """The mapped model of the requested model's family with the highest Claude version."""
    family = model_family(requested)
    if family is None:
        return None
    candidates = [
        (claude_version(name) or (0, 0), name) for name in mapping if model_family(name) == family
    ]
    if not candidates:
        return None
    return mapping[max(candidates)[1]]


@dataclass(frozen=True, slots=True)
class NoFallback:
    reason: str
    detail: str


class LoadedTable(Generic[T]):
    """A small admin-edited table read whole into the process, refreshed every MAP_TTL seconds,
    so routing costs no query on the hot path. While the database is away the loaded copy keeps
    serving. Reads run on a worker thread of their own (not the one shared thread-sensitive
    thread), so a hanging database cannot queue every request behind one read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._map: dict[str, T] = {}
        self._loaded_at = -MAP_TTL

    def _load(self) -> dict[str, T]:
        raise NotImplementedError

    def _load_closing(self) -> dict[str, T]:
        try:
            return self._load()
        finally:
            # A thread of sync_to_async's pool: its connection would otherwise stay open.
            connection.close()

    async def _current(self) -> dict[str, T]:
        now = time.monotonic()
        if now - self._loaded_at >= MAP_TTL:
            try:
                self._map = await sync_to_async(self._load_closing, thread_sensitive=False)()
            except DatabaseError:
                if self._loaded_at < 0 and not self._map:
                    raise  # never loaded: nothing to fall back on
                # The database is away: keep routing with the table we have, ask again soon.
                logger.warning("%s: database unavailable, keeping the loaded table", self._name)
                self._loaded_at = now - MAP_TTL + _RETRY_AFTER_ERROR
                return self._map
            self._loaded_at = now
        return self._map

    def names(self) -> list[str]:
        return list(self._map)

    def invalidate(self) -> None:
        self._loaded_at = -MAP_TTL


class ModelMap(LoadedTable[MappedModel]):
    """Anthropic model names → the Bedrock model that answers for them on fallback."""

    def __init__(self) -> None:
        super().__init__("model map")

    def _load(self) -> dict[str, MappedModel]:
        from proxy.models import ModelMapping

        return {
            normalize_requested_model(name): MappedModel(model_id, max_output)
            for name, model_id, max_output in ModelMapping.objects.filter(enabled=True).values_list(
                "anthropic_model", "bedrock_model_id", "max_output_tokens"
            )
        }

    async def get(self, requested_model: str) -> MappedModel | None:
        return (await self._current()).get(normalize_requested_model(requested_model))

    async def newest_in_family(self, requested_model: str) -> MappedModel | None:
        return newest_in_family(await self._current(), requested_model)


class AliasTable(LoadedTable[str]):
    """Admin-defined model aliases: the name clients send → ``provider/model``."""

    def __init__(self) -> None:
        super().__init__("model aliases")

    def _load(self) -> dict[str, str]:
        from proxy.models import ModelAlias

        return dict(ModelAlias.objects.filter(enabled=True).values_list("alias", "target"))

    async def get(self, name: str) -> str | None:
        return (await self._current()).get(name)


model_map = ModelMap()
model_aliases = AliasTable()


def bedrock_endpoint(credential: ResolvedCredential) -> str:
    if credential.endpoint_url:
        return credential.endpoint_url.rstrip("/")
    region = credential.region or DEFAULT_REGION
    return settings.GATEWAY_BEDROCK_ENDPOINT_URL.replace("{region}", region).rstrip("/")


async def bedrock_target(
    metadata: KeyMetadata, requested_model: str, *, model_id: str = ""
) -> BedrockTarget | NoFallback:
    """The Bedrock leg for ``requested_model`` (or for ``model_id`` itself when a client named a
    Bedrock model with ``bedrock/<model id>``)."""
    credential = metadata.credentials.get("bedrock")
    if credential is None:
        return NoFallback("no_bedrock_credential", "no Bedrock credential applies to this key")
    if credential.error:
        return NoFallback("bedrock_credential_unusable", credential.error)
    if model_id:
        mapped: MappedModel | None = MappedModel(model_id)
    else:
        mapped = await model_map.get(requested_model) if requested_model else None
    if mapped is None and credential.fallback_model:
        mapped = MappedModel(credential.fallback_model)
    if mapped is None and settings.GATEWAY_FALLBACK_SAME_FAMILY:
        mapped = await model_map.newest_in_family(requested_model)
    if mapped is None:
        return NoFallback(
            "no_model_mapping",
            f"model {requested_model!r} has no Bedrock mapping and the credential sets no "
            "fallback model",
        )
    return BedrockTarget(
        model_id=mapped.model_id,
        endpoint=bedrock_endpoint(credential),
        api_mode=credential.api_mode,
        credential_id=credential.id,
        secret=credential.secret,
        max_output_tokens=mapped.max_output_tokens,
    )
