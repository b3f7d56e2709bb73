"""What the proxy knows about an access key: the key's state and the credentials that apply to it.

Plain frozen dataclasses, built by accounts.selectors.key_metadata_load and cached by
accounts.keycache. They import nothing from the rest of the app, so both of those modules can
import them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ResolvedCredential:
    """A provider credential as the proxy uses it; ``error`` is set when it cannot be used.

    ``provider`` is the kind of upstream (``openai``, ``generic``…); ``name`` is set for generic
    OpenAI-compatible servers only (``vllm``, ``groq``), and is how clients address their models
    (``vllm/<model>``). ``secret`` is empty for a credential without one (Ollama, a keyless
    generic server).
    """

    id: int
    provider: str
    scope: str
    region: str
    api_mode: str
    endpoint_url: str
    fallback_model: str
    secret: str = field(repr=False)
    error: str = ""
    name: str = ""
    # Pool membership (accounts.models.ProviderCredential): the weighted strategy's share, and
    # the member's own limits (None: none).
    weight: int = 1
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_concurrency: int | None = None
    label: str = ""

    @property
    def has_limits(self) -> bool:
        return (
            self.rpm_limit is not None
            or self.tpm_limit is not None
            or self.max_concurrency is not None
        )

    @property
    def provider_key(self) -> str:
        """The key of this credential in ``KeyMetadata.credentials``."""
        return self.name or self.provider


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    """One access key. ``credentials`` maps a provider key (the provider for the built-in ones,
    ``"openai"``; the name for generic ones, ``"vllm"``) to the most specific credential.
    ``pools`` maps the same provider keys to every enabled credential of that most specific
    scope (a key pool; its first member is the one in ``credentials``), and ``pool_strategies``
    how each pool picks its members (round robin when absent). ``loaded_at`` (wall clock) tells
    the request flow whether a credential the gateway disabled since is still in here."""

    key_id: int
    user_id: int
    prefix: str
    key_hash: str = field(repr=False)
    status: str
    expires_at: datetime | None
    grace_ends_at: datetime | None
    deleted: bool
    credentials: dict[str, ResolvedCredential] = field(default_factory=dict, repr=False)
    user_active: bool = True
    pools: dict[str, tuple[ResolvedCredential, ...]] = field(default_factory=dict, repr=False)
    pool_strategies: dict[str, str] = field(default_factory=dict, repr=False)
    loaded_at: float = 0.0

    def pool(self, provider_key: str) -> tuple[ResolvedCredential, ...]:
        """The credentials a leg to ``provider_key`` may use, most preferred first."""
        members = self.pools.get(provider_key)
        if members:
            return members
        credential = self.credentials.get(provider_key)
        return (credential,) if credential is not None else ()

    def usable_at(self, moment: datetime) -> bool:
        # A deactivated user's keys stop working with the user, whatever their own state.
        if not self.user_active or self.deleted:
            return False
        if self.expires_at is not None and self.expires_at <= moment:
            return False
        if self.status == "active":
            return True
        if self.status == "rotated":
            return self.grace_ends_at is not None and self.grace_ends_at > moment
        return False
