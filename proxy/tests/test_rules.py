"""Routing rules without a database: globs, conditions, and the order strategies give targets."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from proxy.rules import (
    ORDERED,
    ROUND_ROBIN,
    WEIGHTED,
    CompiledRule,
    RouteRequest,
    Target,
    compile_glob,
    glob_problem,
    header_name_problem,
    matching_rule,
    ordered_targets,
    turns,
    weighted_order,
)


def _request(**values: Any) -> RouteRequest:
    defaults: dict[str, Any] = {
        "model": "gpt-4.1",
        "headers": {},
        "access_key_id": 7,
        "user_id": 3,
        "stream": False,
    }
    defaults.update(values)
    return RouteRequest(**defaults)


def _rule(rule_id: int = 1, **values: Any) -> CompiledRule:
    values.setdefault("targets", (Target("openai", "", 1, 1, 0),))
    return CompiledRule(id=rule_id, name=f"rule {rule_id}", **values)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("cheap-*", ""),
        ("gpt-4.1?", ""),
        ("claude-[os]*", ""),
        ("[!x]*", ""),
        ("[]]x", ""),
        ("a[[]b", ""),
        ("claude-[os", "A [ is not closed"),
        ("x[!", "A [ is not closed"),
        ("two words", "Spaces are not allowed"),
        (" gpt", "Spaces are not allowed"),
        ("nul\x00", "NUL characters"),
    ],
)
def test_glob_problems_are_named(pattern: str, problem: str) -> None:
    found = glob_problem(pattern)
    assert (found == "") if not problem else found.startswith(problem)


@pytest.mark.parametrize(
    ("pattern", "model", "matches"),
    [
        ("gpt-4.1", "gpt-4.1", True),
        ("gpt-4.1", "gpt-4.1-mini", False),
        ("gpt-4.1", "gpt-401", False),  # no glob characters: "." is not a wildcard
        ("cheap-*", "cheap-chat", True),
        ("cheap-*", "cheap-", True),
        ("cheap-*", "expensive-cheap-x", False),
        ("claude-*-4-5", "claude-sonnet-4-5", True),
        ("claude-[os]*", "claude-opus-4", True),
        ("claude-[os]*", "claude-haiku-4", False),
        ("model?", "model1", True),
        ("model?", "model12", False),
        ("*", "anything/at all", True),
    ],
)
def test_model_globs(pattern: str, model: str, matches: bool) -> None:
    assert compile_glob(pattern)(model) is matches


def test_header_names() -> None:
    assert header_name_problem("x-gateway-route") == ""
    assert header_name_problem("X-Gateway-Route") == ""
    assert header_name_problem("bad header") != ""
    assert header_name_problem("x:y") != ""


def test_every_condition_must_hold() -> None:
    rule = _rule(
        model=compile_glob("cheap-*"),
        header_name="x-gateway-route",
        header_value=compile_glob("fast"),
        access_key_id=7,
        user_ids=frozenset({3}),
        stream=True,
        min_input_tokens=10,
        max_input_tokens=100,
    )
    good: dict[str, Any] = {
        "model": "cheap-chat",
        "headers": {"x-gateway-route": "fast"},
        "stream": True,
        "input_tokens": lambda: 50,
    }
    assert rule.matches(_request(**good))
    for change in (
        {"model": "gpt-4.1"},
        {"headers": {}},
        {"headers": {"x-gateway-route": "slow"}},
        {"access_key_id": 8},
        {"user_id": 4},
        {"stream": False},
        {"input_tokens": lambda: 9},
        {"input_tokens": lambda: 101},
    ):
        assert not rule.matches(_request(**{**good, **change})), change


def test_a_header_without_value_pattern_matches_when_present() -> None:
    rule = _rule(header_name="x-gateway-route")
    assert rule.matches(_request(headers={"x-gateway-route": ""}))
    assert not rule.matches(_request(headers={"x-other": "1"}))


def test_the_token_estimate_is_made_only_for_a_rule_with_a_range() -> None:
    def explode() -> int:
        raise AssertionError("estimated without need")

    assert _rule(model=compile_glob("gpt-*")).matches(_request(input_tokens=explode))
    # A rule that fails a cheaper condition never estimates either.
    ranged = _rule(access_key_id=99, min_input_tokens=1)
    assert not ranged.matches(_request(input_tokens=explode))


def test_first_matching_rule_wins_and_none_when_nothing_matches() -> None:
    rules = [
        _rule(1, model=compile_glob("cheap-*")),
        _rule(2, model=compile_glob("*")),
        _rule(3),
    ]
    assert matching_rule(rules, _request(model="cheap-x")) is rules[0]
    assert matching_rule(rules, _request(model="gpt-4.1")) is rules[1]
    assert matching_rule(rules[:1], _request(model="gpt-4.1")) is None


def test_ordered_strategy_keeps_tiers_and_positions() -> None:
    rule = _rule(
        targets=(
            Target("anthropic", "", 1, 1, 0),
            Target("bedrock", "", 2, 1, 0),
            Target("openai", "gpt-4.1", 3, 1, 0),
        ),
        strategy=ORDERED,
    )
    assert [target.provider for target in ordered_targets(rule)] == [
        "anthropic",
        "bedrock",
        "openai",
    ]


def test_weighted_first_picks_follow_the_weights() -> None:
    targets = [
        Target("a", "", 1, 6, 0),
        Target("b", "", 1, 3, 1),
        Target("c", "", 1, 1, 2),
        Target("never-first", "", 1, 0, 3),
    ]
    rng = random.Random(1234)
    picks = 20_000
    firsts = Counter(weighted_order(targets, rng)[0].provider for _ in range(picks))
    # Binomial standard deviation at p=0.6 over 20,000 picks is ~69; 5 sigma bounds.
    for name, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        expected = share * picks
        assert abs(firsts[name] - expected) < 5 * (picks * share * (1 - share)) ** 0.5, firsts
    assert firsts["never-first"] == 0
    # Every target is still in the order, weight 0 last, as the failover of last resort.
    order = weighted_order(targets, rng)
    assert sorted(target.provider for target in order) == ["a", "b", "c", "never-first"]
    assert order[-1].provider == "never-first"


def test_weighted_applies_inside_each_tier_only() -> None:
    rule = _rule(
        targets=(
            Target("a", "", 1, 1, 0),
            Target("b", "", 1, 1, 1),
            Target("z", "", 2, 100, 0),
        ),
        strategy=WEIGHTED,
    )
    rng = random.Random(5)
    for _ in range(200):
        assert ordered_targets(rule, rng)[-1].provider == "z"


def test_round_robin_takes_turns_per_rule_and_tier() -> None:
    turns.reset()
    rule = _rule(
        42,
        targets=(
            Target("a", "", 1, 1, 0),
            Target("b", "", 1, 1, 1),
            Target("c", "", 1, 1, 2),
            Target("z", "", 2, 1, 0),
        ),
        strategy=ROUND_ROBIN,
    )
    firsts = [ordered_targets(rule)[0].provider for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert [target.provider for target in ordered_targets(rule)] == ["a", "b", "c", "z"]
    turns.reset()
