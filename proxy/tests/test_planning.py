"""Plans: which legs a requested model gets, for each kind of name and each missing piece."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.models import ModelAlias, ModelMapping
from proxy.planning import PlanError, default_provider, make_plan
from proxy.routing import model_aliases, model_map
from proxy.testing.metadata import key_metadata, resolved_credential

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_tables() -> Any:
    model_map.invalidate()
    model_aliases.invalidate()
    ModelMapping.objects.get_or_create(
        anthropic_model="claude-sonnet-4-5",
        defaults={"bedrock_model_id": "global.anthropic.claude-sonnet-4-5-20250929-v1:0"},
    )
    yield
    model_map.invalidate()
    model_aliases.invalidate()


@pytest.mark.parametrize(
    ("model", "wire", "provider"),
    [
        ("claude-sonnet-4-5", "openai", "anthropic"),
        ("gpt-4.1", "anthropic", "openai"),
        ("o3-mini", "anthropic", "openai"),
        ("o4", "anthropic", "openai"),
        ("text-embedding-3-small", "anthropic", "openai"),
        ("gemini-2.5-pro", "anthropic", "gemini"),
        ("omega-model", "anthropic", "anthropic"),
        ("omega-model", "openai", "openai"),
        ("olmo-2", "anthropic", "anthropic"),
    ],
)
def test_bare_names_go_to_their_family(model: str, wire: str, provider: str) -> None:
    assert default_provider(model, surface_wire=wire) == provider


async def test_claude_with_client_credential_is_anthropic_then_bedrock() -> None:
    plan = await make_plan(
        requested_model="claude-sonnet-4-5",
        metadata=key_metadata(resolved_credential("bedrock")),
        surface_wire="anthropic",
        client_credential="sk-ant-client",
    )
    assert [(leg.provider, leg.model) for leg in plan.legs] == [
        ("anthropic", "claude-sonnet-4-5"),
        ("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ]
    assert plan.legs[0].client_credential == "sk-ant-client"
    assert plan.no_fallback is None


async def test_claude_without_bedrock_says_why_there_is_no_fallback() -> None:
    plan = await make_plan(
        requested_model="claude-sonnet-4-5",
        metadata=key_metadata(),
        surface_wire="anthropic",
        client_credential="sk-ant-client",
    )
    assert [leg.provider for leg in plan.legs] == ["anthropic"]
    assert plan.no_fallback is not None and plan.no_fallback.reason == "no_bedrock_credential"


async def test_anthropic_client_without_credential_defers_anthropic() -> None:
    plan = await make_plan(
        requested_model="claude-sonnet-4-5",
        metadata=key_metadata(resolved_credential("bedrock")),
        surface_wire="anthropic",
    )
    assert [leg.provider for leg in plan.legs] == ["anthropic", "bedrock"]
    assert plan.deferred_reason == "no_anthropic_credential"


async def test_openai_client_uses_the_stored_anthropic_key() -> None:
    plan = await make_plan(
        requested_model="anthropic/claude-sonnet-4-5",
        metadata=key_metadata(resolved_credential("anthropic")),
        surface_wire="openai",
    )
    (leg,) = plan.legs
    assert (leg.provider, leg.model, leg.client_credential) == (
        "anthropic",
        "claude-sonnet-4-5",
        "",
    )
    assert leg.credential is not None and leg.credential.secret == "secret-anthropic-"


async def test_openai_client_without_any_claude_credential_is_told_the_fix() -> None:
    with pytest.raises(PlanError) as raised:
        await make_plan(
            requested_model="claude-sonnet-4-5", metadata=key_metadata(), surface_wire="openai"
        )
    assert raised.value.status == 400
    assert "No anthropic credential" in raised.value.message
    assert "set_provider_credential anthropic" in raised.value.message


@pytest.mark.parametrize(
    ("model", "provider", "kind", "upstream"),
    [
        ("openai/gpt-4.1", "openai", "openai", "gpt-4.1"),
        ("gpt-4.1-mini", "openai", "openai", "gpt-4.1-mini"),
        ("gemini/gemini-2.5-pro", "gemini", "gemini", "gemini-2.5-pro"),
        ("ollama/qwen3:8b", "ollama", "ollama", "qwen3:8b"),
        ("vllm/Qwen/Qwen2.5-7B", "vllm", "generic", "Qwen/Qwen2.5-7B"),
        ("bedrock/us.meta.llama3-70b", "bedrock", "bedrock", "us.meta.llama3-70b"),
    ],
)
async def test_provider_prefixes_name_one_leg(
    model: str, provider: str, kind: str, upstream: str
) -> None:
    metadata = key_metadata(
        resolved_credential("openai"),
        resolved_credential("gemini"),
        resolved_credential("bedrock"),
        resolved_credential("generic", name="vllm", endpoint_url="http://127.0.0.1:9"),
    )
    plan = await make_plan(requested_model=model, metadata=metadata, surface_wire="openai")
    (leg,) = plan.legs
    assert (leg.provider, leg.kind, leg.model) == (provider, kind, upstream)


async def test_ollama_needs_no_credential() -> None:
    plan = await make_plan(
        requested_model="ollama/llama3.2", metadata=key_metadata(), surface_wire="anthropic"
    )
    (leg,) = plan.legs
    assert (leg.provider, leg.credential) == ("ollama", None)


async def test_unknown_prefix_names_it_and_lists_the_configured_ones() -> None:
    metadata = key_metadata(
        resolved_credential("openai"), resolved_credential("generic", name="groq")
    )
    with pytest.raises(PlanError) as raised:
        await make_plan(requested_model="mistral/large", metadata=metadata, surface_wire="openai")
    assert raised.value.status == 400
    assert "'mistral'" in raised.value.message
    assert "groq, ollama, openai" in raised.value.message


async def test_a_provider_without_credential_is_a_4xx_naming_the_fix() -> None:
    with pytest.raises(PlanError) as raised:
        await make_plan(requested_model="gpt-4.1", metadata=key_metadata(), surface_wire="openai")
    assert raised.value.status == 400
    assert "No openai credential" in raised.value.message


async def test_an_undecryptable_credential_is_a_403() -> None:
    metadata = key_metadata(resolved_credential("gemini", error="cannot decrypt"))
    with pytest.raises(PlanError) as raised:
        await make_plan(
            requested_model="gemini-2.5-flash", metadata=metadata, surface_wire="openai"
        )
    assert raised.value.status == 403


async def test_a_generic_name_is_not_a_builtin_without_its_credential() -> None:
    # "vllm" is configured for another key only: for this key the prefix is unknown.
    with pytest.raises(PlanError):
        await make_plan(requested_model="vllm/qwen", metadata=key_metadata(), surface_wire="openai")


async def test_aliases_are_resolved_first() -> None:
    await ModelAlias.objects.acreate(alias="fast", target="ollama/qwen3")
    await ModelAlias.objects.acreate(alias="off", target="openai/gpt-4.1", enabled=False)
    plan = await make_plan(requested_model="fast", metadata=key_metadata(), surface_wire="openai")
    assert [(leg.provider, leg.model) for leg in plan.legs] == [("ollama", "qwen3")]
    # A disabled alias is not an alias: "off" is a bare name for the surface's provider.
    with pytest.raises(PlanError, match="No openai credential"):
        await make_plan(requested_model="off", metadata=key_metadata(), surface_wire="openai")


async def test_empty_model_after_the_prefix_is_refused() -> None:
    with pytest.raises(PlanError, match="names no model"):
        await make_plan(
            requested_model="openai/",
            metadata=key_metadata(resolved_credential("openai")),
            surface_wire="openai",
        )
