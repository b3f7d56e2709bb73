"""Writes and checks of routing rules, shared by the admin and the management API.

A rule is checked whole — its own fields and its targets together — when saved, so a rule that
could never work (a bad glob, an unknown provider, a provider without a credential, a tier whose
only target has weight 0) is refused with the field named, never found out at request time.
After a change commits, every process drops its loaded rules: this one at once, the others
through the key cache's generation counter (accounts.keycache), within about a second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.keycache import invalidate_key_metadata
from accounts.models import Provider, ProviderCredential, User
from proxy.models import RouteTarget, RoutingRule
from proxy.rules import (
    CompiledRule,
    Target,
    compile_glob,
    glob_problem,
    header_name_problem,
    routing_rules,
)

# Providers a target may name without any stored credential: Anthropic forwards the client's
# own key, and Ollama servers usually take none.
_NO_CREDENTIAL_NEEDED = frozenset({Provider.ANTHROPIC, Provider.OLLAMA})
_BUILTIN = frozenset(Provider.values) - {Provider.GENERIC}


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A target as a form or an API call gives it, before it is saved."""

    provider: str
    model: str = ""
    tier: int = 1
    weight: int = 1
    position: int = 0


def _text_problem(value: str) -> str:
    if "\x00" in value:
        return "NUL characters are not allowed."
    if any(character.isspace() for character in value):
        return "Spaces are not allowed."
    return ""


def rule_errors(rule: RoutingRule) -> dict[str, str]:
    """Problems with the rule's own fields, by field name."""
    errors: dict[str, str] = {}
    if rule.model_pattern and (problem := glob_problem(rule.model_pattern)):
        errors["model_pattern"] = problem
    if rule.header_name and (problem := header_name_problem(rule.header_name)):
        errors["header_name"] = problem
    if rule.header_value and not rule.header_name:
        errors["header_value"] = "A header value needs a header name to match."
    elif rule.header_value and (problem := glob_problem(rule.header_value)):
        errors["header_value"] = problem
    if (
        rule.min_input_tokens is not None
        and rule.max_input_tokens is not None
        and rule.min_input_tokens > rule.max_input_tokens
    ):
        errors["max_input_tokens"] = "Must not be below the minimum."
    if rule.max_attempts == 0:
        errors["max_attempts"] = "At least 1, or empty for every target."
    if rule.deadline_seconds == 0:
        errors["deadline_seconds"] = "At least 1 second, or empty for none."
    if rule.access_key_id is not None and rule.user_id is not None:
        owner = rule.access_key.user_id if rule.access_key is not None else None
        if owner != rule.user_id:
            errors["access_key"] = "This key belongs to another user: the rule could never match."
    return errors


def _provider_problem(provider: str) -> str:
    if provider in _BUILTIN:
        if provider in _NO_CREDENTIAL_NEEDED:
            return ""
        if ProviderCredential.objects.filter(provider=provider, enabled=True).exists():
            return ""
        return (
            f"No enabled {provider} credential exists: add one (Provider credentials) before "
            "routing to it."
        )
    generic = ProviderCredential.objects.filter(provider=Provider.GENERIC, name=provider)
    if generic.filter(enabled=True).exists():
        return ""
    if generic.exists():
        return f"The generic server {provider!r} has no enabled credential."
    names = ", ".join(sorted(_BUILTIN))
    return f"Unknown provider {provider!r}: use one of {names}, or a generic server's name."


def target_errors(rule: RoutingRule, targets: Sequence[TargetSpec]) -> list[dict[str, str]]:
    """Problems with each target (by position in ``targets``; an empty dict when fine), the
    tier-level ones reported on the tier's first target."""
    errors: list[dict[str, str]] = [{} for _ in targets]
    for index, target in enumerate(targets):
        if not target.provider:
            errors[index]["provider"] = "Name a provider."
        elif problem := _provider_problem(target.provider):
            errors[index]["provider"] = problem
        if target.model and (problem := _text_problem(target.model)):
            errors[index]["model"] = problem
        if target.tier < 1:
            errors[index]["tier"] = "Tiers are numbered from 1."
    tiers: dict[int, list[int]] = defaultdict(list)
    for index, target in enumerate(targets):
        tiers[target.tier].append(index)
    for indexes in tiers.values():
        weights = [targets[index].weight for index in indexes]
        if len(indexes) == 1 and weights[0] == 0:
            errors[indexes[0]]["weight"] = (
                "The only target of its tier cannot have weight 0: it would never be chosen first."
            )
        elif rule.strategy == RoutingRule.Strategy.WEIGHTED and not any(weights):
            errors[indexes[0]]["weight"] = "A weighted tier needs one target with a weight above 0."
    return errors


def routing_rule_check(rule: RoutingRule, targets: Sequence[TargetSpec]) -> None:
    """Raise ValidationError (a dict by field; target problems under ``targets``) when the rule
    and its targets cannot work together."""
    errors: dict[str, object] = dict(rule_errors(rule))
    if not targets:
        errors["targets"] = "A rule needs at least one target."
    else:
        per_target = target_errors(rule, targets)
        problems = [
            f"target {index + 1} ({targets[index].provider or '?'}) {name}: {message}"
            for index, target_problems in enumerate(per_target)
            for name, message in target_problems.items()
        ]
        if problems:
            errors["targets"] = problems
    if errors:
        raise ValidationError(errors)


def routing_rules_changed() -> None:
    """After a commit: drop the loaded rules here now and everywhere else within a second."""
    routing_rules.invalidate()
    transaction.on_commit(invalidate_key_metadata)


@transaction.atomic
def routing_rule_save(rule: RoutingRule, targets: Sequence[TargetSpec]) -> RoutingRule:
    """Create or replace a rule with exactly these targets (checked first)."""
    rule.full_clean(validate_constraints=False)
    routing_rule_check(rule, targets)
    rule.updated_at = timezone.now()
    rule.save()
    rule.targets.all().delete()
    RouteTarget.objects.bulk_create(
        RouteTarget(
            rule=rule,
            provider=target.provider,
            model=target.model,
            tier=target.tier,
            weight=target.weight,
            position=target.position,
        )
        for target in targets
    )
    routing_rules_changed()
    return rule


@transaction.atomic
def routing_rule_delete(rule: RoutingRule) -> None:
    rule.delete()
    routing_rules_changed()


def _members(group_ids: set[int]) -> dict[int, set[int]]:
    members: dict[int, set[int]] = defaultdict(set)
    through = User.groups.through
    for user_id, group_id in through.objects.filter(group_id__in=group_ids).values_list(
        "user_id", "group_id"
    ):
        members[group_id].add(user_id)
    return members


def _user_ids(rule: RoutingRule, members: dict[int, set[int]]) -> frozenset[int] | None:
    if rule.group_id is None:
        return None if rule.user_id is None else frozenset({rule.user_id})
    in_group = members.get(rule.group_id, set())
    if rule.user_id is not None:
        in_group = in_group & {rule.user_id}
    return frozenset(in_group)


def compile_rule(rule: RoutingRule, members: dict[int, set[int]]) -> CompiledRule:
    stream = {RoutingRule.Stream.STREAM: True, RoutingRule.Stream.NO_STREAM: False}.get(
        RoutingRule.Stream(rule.stream)
    )
    targets = sorted(
        (
            Target(
                provider=target.provider,
                model=target.model,
                tier=target.tier,
                weight=target.weight,
                position=target.position,
            )
            for target in rule.targets.all()
        ),
        key=lambda target: (target.tier, target.position),
    )
    return CompiledRule(
        id=rule.pk,
        name=rule.name,
        targets=tuple(targets),
        strategy=rule.strategy,
        model=compile_glob(rule.model_pattern) if rule.model_pattern else None,
        header_name=rule.header_name.lower(),
        header_value=compile_glob(rule.header_value) if rule.header_value else None,
        access_key_id=rule.access_key_id,
        user_ids=_user_ids(rule, members),
        min_input_tokens=rule.min_input_tokens,
        max_input_tokens=rule.max_input_tokens,
        stream=stream,
        max_attempts=rule.max_attempts,
        deadline_seconds=float(rule.deadline_seconds) if rule.deadline_seconds else None,
    )


def compiled_rules() -> list[CompiledRule]:
    """Every enabled rule with at least one target, compiled, first match first (3 queries)."""
    rules = list(
        RoutingRule.objects.filter(enabled=True)
        .prefetch_related("targets")
        .order_by("position", "id")
    )
    members = _members({rule.group_id for rule in rules if rule.group_id is not None})
    return [compile_rule(rule, members) for rule in rules if rule.targets.all()]


def group_membership_changed(action: str, **_: object) -> None:
    """m2m_changed receiver for users' groups: rules matching a group must see its members."""
    if action in ("post_add", "post_remove", "post_clear"):
        routing_rules_changed()
