"""Routing rules end to end: the official SDKs against the running gateway, rules saved through
the same service the admin and the API use, and fake upstreams that record what they got."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from django.contrib.auth.models import Group

from accounts.keycache import invalidate_key_metadata
from accounts.services import access_key_create
from proxy.models import RoutingRule
from proxy.rule_services import TargetSpec, routing_rule_save
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.testing.fixtures import FakeProviders
from proxy.testing.provider_server import key_sha256
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import (
    GEMINI_KEY,
    anthropic_client,
    openai_client,
    providers_fixture,  # noqa: F401 (the providers fixture)
)


def _rule(name: str, targets: list[TargetSpec], **fields: Any) -> RoutingRule:
    return routing_rule_save(RoutingRule(name=name, **fields), targets)


def _ask(client: openai.OpenAI, model: str, **params: Any) -> Any:
    messages = params.pop("messages", [{"role": "user", "content": "Say hello"}])
    return client.chat.completions.with_raw_response.create(
        model=model, messages=messages, **params
    )


def test_a_model_glob_sends_cheap_models_to_ollama(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
) -> None:
    _rule("cheap", [TargetSpec("ollama", "qwen3")], model_pattern="cheap-*")
    providers.ollama.queue_answers(ScriptedAnswer.text("Local hello"))
    providers.openai.queue_answers(ScriptedAnswer.text("Cloud hello"))
    client = openai_client(gateway_server, key_holder.plaintext)

    routed = _ask(client, "cheap-chat")
    assert routed.parse().choices[0].message.content == "Local hello"
    assert providers.ollama.last_request.parsed["model"] == "qwen3"
    # Not matching: the default route (gpt-* → OpenAI) as before.
    default = _ask(client, "gpt-4.1")
    assert default.parse().choices[0].message.content == "Cloud hello"
    events = recorded_events(2)
    assert [(event.requested_model, event.provider) for event in events] == [
        ("cheap-chat", "ollama"),
        ("gpt-4.1", "openai"),
    ]


def test_a_header_picks_the_route(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    _rule(
        "fast lane",
        [TargetSpec("gemini", "gemini-2.5-flash")],
        header_name="x-gateway-route",
        header_value="fast",
    )
    providers.gemini.queue_answers(ScriptedAnswer.text("Quick"))
    providers.openai.queue_answers(ScriptedAnswer.text("Usual"))
    client = openai_client(gateway_server, key_holder.plaintext)
    fast = _ask(client, "gpt-4.1", extra_headers={"x-gateway-route": "fast"})
    assert fast.parse().choices[0].message.content == "Quick"
    assert providers.gemini.last_request.key_sha256 == key_sha256(GEMINI_KEY)
    assert "gemini-2.5-flash" in providers.gemini.last_request.path
    usual = _ask(client, "gpt-4.1", extra_headers={"x-gateway-route": "slow"})
    assert usual.parse().choices[0].message.content == "Usual"


def test_a_failing_tier_fails_over_to_the_next(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
) -> None:
    _rule(
        "openai then ollama",
        [TargetSpec("openai", "gpt-4.1", tier=1), TargetSpec("ollama", "qwen3", tier=2)],
        model_pattern="team-model",
    )
    providers.openai.add_fault(HttpError(status=503))
    providers.ollama.queue_answers(ScriptedAnswer.text("From the failover"))
    response = _ask(openai_client(gateway_server, key_holder.plaintext), "team-model")
    assert response.parse().choices[0].message.content == "From the failover"
    assert response.headers["x-gateway-provider"] == "ollama"
    assert len(providers.openai.requests) == 1
    (event,) = recorded_events(1)
    assert event.provider == "ollama"
    assert event.fallback_reason  # why the first target did not answer


def test_max_attempts_bounds_the_failover(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    _rule(
        "one try",
        [TargetSpec("openai", "gpt-4.1", tier=1), TargetSpec("ollama", "qwen3", tier=2)],
        model_pattern="team-model",
        max_attempts=1,
    )
    providers.openai.add_fault(HttpError(status=503))
    with pytest.raises(openai.InternalServerError) as raised:
        _ask(openai_client(gateway_server, key_holder.plaintext), "team-model")
    assert raised.value.status_code == 503
    assert providers.ollama.requests == []


def test_the_deadline_stops_failover_after_a_slow_failure(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    _rule(
        "deadline",
        [TargetSpec("openai", "gpt-4.1", tier=1), TargetSpec("ollama", "qwen3", tier=2)],
        model_pattern="team-model",
        deadline_seconds=1,
    )
    providers.openai.add_fault(HttpError(status=503, delay=1.2))
    with pytest.raises(openai.InternalServerError):
        _ask(openai_client(gateway_server, key_holder.plaintext), "team-model")
    assert providers.ollama.requests == []


def test_group_and_user_rules_route_only_their_people(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    from accounts.models import User

    research = Group.objects.create(name="research")
    colleague = User.objects.create_user(email="colleague@example.com")
    _, colleague_key = access_key_create(user=colleague, label="desk")
    _rule("research to gemini", [TargetSpec("gemini", "gemini-2.5-pro")], group=research)
    providers.gemini.queue_answers(ScriptedAnswer.text("Research answer"))
    providers.openai.queue_answers(
        ScriptedAnswer.text("Default answer"), ScriptedAnswer.text("Default answer")
    )
    # Nobody in the group yet: both go the default way.
    assert (
        (
            _ask(openai_client(gateway_server, key_holder.plaintext), "gpt-4.1").parse().choices[0]
        ).message.content
        == "Default answer"
    )
    # Joining the group (as the admin's user form saves it) takes effect at once.
    key_holder.user.groups.add(research)
    assert (
        (
            _ask(openai_client(gateway_server, key_holder.plaintext), "gpt-4.1").parse().choices[0]
        ).message.content
        == "Research answer"
    )
    assert (
        (
            _ask(openai_client(gateway_server, colleague_key), "gpt-4.1").parse().choices[0]
        ).message.content
        == "Default answer"
    )


def test_long_prompts_take_the_large_context_route(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    _rule(
        "long prompts",
        [TargetSpec("gemini", "gemini-2.5-pro")],
        min_input_tokens=2_000,
        model_pattern="gpt-*",
    )
    providers.openai.queue_answers(ScriptedAnswer.text("Short"))
    providers.gemini.queue_answers(ScriptedAnswer.text("Long"))
    client = openai_client(gateway_server, key_holder.plaintext)
    assert _ask(client, "gpt-4.1").parse().choices[0].message.content == "Short"
    long_prompt = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 1_000}]
    answer = _ask(client, "gpt-4.1", messages=long_prompt)
    assert answer.parse().choices[0].message.content == "Long"


def test_claude_code_route_anthropic_then_openai(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    bedrock_credential: None,
) -> None:
    """Everything to Anthropic, then Bedrock, then OpenAI: an Anthropic client keeps its
    format whoever answers."""
    _rule(
        "everything else",
        [
            TargetSpec("anthropic", "", tier=1),
            TargetSpec("bedrock", "", tier=2),
            TargetSpec("openai", "gpt-4.1", tier=3),
        ],
        position=1000,
    )
    fake_upstream_settings.add_fault(
        "anthropic", HttpError(status=529, error_type="overloaded_error")
    )
    fake_upstream_settings.add_fault("bedrock", HttpError(status=503))
    providers.openai.queue_answers(ScriptedAnswer.text("OpenAI stands in"))
    client = anthropic_client(gateway_server, key_holder.plaintext)
    response = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    message = response.parse()
    assert message.content[0].type == "text" and message.content[0].text == "OpenAI stands in"
    assert response.headers["x-gateway-provider"] == "openai"
    assert providers.openai.last_request.parsed["model"] == "gpt-4.1"
    assert len(fake_upstream_settings.requests_to("anthropic")) == 1
    assert len(fake_upstream_settings.requests_to("bedrock")) == 1


def test_a_rule_whose_targets_this_key_cannot_use_answers_in_the_client_format(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    rule = _rule("gemini only", [TargetSpec("gemini", "gemini-2.5-pro")], model_pattern="g-*")
    # The credential goes away after the rule was saved: the rule cannot be used by this key.
    from accounts.models import ProviderCredential

    ProviderCredential.objects.filter(provider="gemini").delete()
    invalidate_key_metadata()
    with pytest.raises(openai.BadRequestError) as raised:
        _ask(openai_client(gateway_server, key_holder.plaintext), "g-model")
    assert "gemini credential" in raised.value.message
    assert rule.pk is not None


OPENAI_TOO_LONG = HttpError(
    status=400,
    error_type="invalid_request_error",
    code="context_length_exceeded",
    message="This model's maximum context length is 128000 tokens. However, your messages "
    "resulted in 130211 tokens.",
)


def test_a_context_window_error_moves_to_the_larger_target(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
) -> None:
    _rule(
        "small then large",
        [TargetSpec("openai", "gpt-4.1", tier=1), TargetSpec("gemini", "gemini-2.5-pro", tier=2)],
        model_pattern="team-model",
    )
    providers.openai.add_fault(OPENAI_TOO_LONG)
    providers.gemini.queue_answers(ScriptedAnswer.text("Read it all"))
    response = _ask(openai_client(gateway_server, key_holder.plaintext), "team-model")
    assert response.parse().choices[0].message.content == "Read it all"
    assert response.headers["x-gateway-provider"] == "gemini"
    assert response.headers["x-gateway-fallback-reason"] == "context_length_exceeded"
    (event,) = recorded_events(1)
    assert event.provider == "gemini"


def test_without_a_rule_the_context_window_error_is_the_clients(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.openai.add_fault(OPENAI_TOO_LONG)
    with pytest.raises(openai.BadRequestError) as raised:
        _ask(openai_client(gateway_server, key_holder.plaintext), "gpt-4.1")
    assert raised.value.code == "context_length_exceeded"
    assert providers.gemini.requests == []


def test_other_bad_requests_do_not_move_on(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    _rule(
        "small then large",
        [TargetSpec("openai", "gpt-4.1", tier=1), TargetSpec("gemini", "gemini-2.5-pro", tier=2)],
        model_pattern="team-model",
    )
    providers.openai.add_fault(
        HttpError(status=400, message="Invalid value for 'temperature'", code="invalid_value")
    )
    with pytest.raises(openai.BadRequestError):
        _ask(openai_client(gateway_server, key_holder.plaintext), "team-model")
    assert providers.gemini.requests == []


def test_claude_prompt_too_long_moves_on_for_an_anthropic_client(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
) -> None:
    _rule(
        "claude then gemini",
        [
            TargetSpec("anthropic", "", tier=1),
            TargetSpec("gemini", "gemini-2.5-pro", tier=2),
        ],
        model_pattern="claude-*",
    )
    fake_upstream_settings.add_fault(
        "anthropic",
        HttpError(
            status=400,
            error_type="invalid_request_error",
            message="prompt is too long: 215000 tokens > 200000 maximum",
        ),
    )
    providers.gemini.queue_answers(ScriptedAnswer.text("Gemini read it"))
    client = anthropic_client(gateway_server, key_holder.plaintext)
    response = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    message = response.parse()
    assert message.content[0].type == "text" and message.content[0].text == "Gemini read it"
    assert response.headers["x-gateway-fallback-reason"] == "context_length_exceeded"
