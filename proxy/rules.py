"""Routing rules as the request flow uses them: compiled once per load, matched per request.

An admin's ``RoutingRule`` rows (proxy.models) are read whole into the process, like the model
map, and compiled: globs become regular expressions, groups become the set of their users' ids.
``matching_rule`` returns the first enabled rule, by position, whose every condition holds; its
``ordered_targets`` are the targets to try: tier by tier, each tier ordered by the rule's
strategy. Planning turns those into legs (proxy.planning). Everything here except the table is a
pure function of its arguments (and, for round-robin, a per-process turn counter).
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from proxy.routing import LoadedTable

ORDERED = "ordered"
WEIGHTED = "weighted"
ROUND_ROBIN = "round_robin"

_GLOB_CHARACTERS = frozenset("*?[")
# Header names as HTTP defines them (RFC 9110 token), lowercased as the proxy sees them.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")


class RuleError(ValueError):
    """A rule that cannot work, with the field at fault (raised when saving, never at request
    time)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def glob_problem(pattern: str) -> str:
    """Why ``pattern`` is not a usable glob, or "" when it is.

    fnmatch reads an unclosed ``[`` as a literal bracket: a pattern an admin almost certainly
    mistyped, so it is refused rather than silently matching nothing.
    """
    if "\x00" in pattern:
        return "NUL characters are not allowed."
    if pattern != pattern.strip() or any(character.isspace() for character in pattern):
        return "Spaces are not allowed in a pattern."
    depth_open = False
    index = 0
    while index < len(pattern):
        character = pattern[index]
        if character == "[" and not depth_open:
            depth_open = True
            # A ] right after [ (or [!) is part of the set, not its end.
            if pattern[index + 1 : index + 2] == "!":
                index += 1
            if pattern[index + 1 : index + 2] == "]":
                index += 1
        elif character == "]" and depth_open:
            depth_open = False
        index += 1
    if depth_open:
        return "A [ is not closed: write [abc] for a set, or [[] for a literal bracket."
    return ""


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A test for ``pattern``: equality when it has no glob characters, else a regex."""
    if not _GLOB_CHARACTERS.intersection(pattern):
        return pattern.__eq__
    regex = re.compile(fnmatch.translate(pattern))
    return lambda value: regex.fullmatch(value) is not None


def header_name_problem(name: str) -> str:
    if not _HEADER_NAME.match(name.lower()):
        return "Not a header name: letters, digits and - (e.g. x-gateway-route)."
    return ""


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str  # "" = the requested model
    tier: int
    weight: int
    position: int


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What rules can match on. ``input_tokens`` is called only by a rule with a token range
    (estimating costs CPU; most requests never need it)."""

    model: str
    headers: Mapping[str, str]
    access_key_id: int
    user_id: int
    stream: bool
    input_tokens: Callable[[], int] = field(repr=False, default=lambda: 0)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: int
    name: str
    targets: tuple[Target, ...]
    strategy: str = ORDERED
    model: Callable[[str], bool] | None = field(default=None, repr=False)
    header_name: str = ""
    header_value: Callable[[str], bool] | None = field(default=None, repr=False)
    access_key_id: int | None = None
    user_ids: frozenset[int] | None = None  # the user's id, or the group's members
    min_input_tokens: int | None = None
    max_input_tokens: int | None = None
    stream: bool | None = None
    max_attempts: int | None = None
    deadline_seconds: float | None = None

    def matches(self, request: RouteRequest) -> bool:
        # Cheapest conditions first; the token estimate last, and only when a range is set.
        if self.access_key_id is not None and request.access_key_id != self.access_key_id:
            return False
        if self.user_ids is not None and request.user_id not in self.user_ids:
            return False
        if self.stream is not None and request.stream != self.stream:
            return False
        if self.model is not None and not self.model(request.model):
            return False
        if self.header_name:
            value = request.headers.get(self.header_name)
            if value is None:
                return False
            if self.header_value is not None and not self.header_value(value):
                return False
        if self.min_input_tokens is not None or self.max_input_tokens is not None:
            tokens = request.input_tokens()
            if self.min_input_tokens is not None and tokens < self.min_input_tokens:
                return False
            if self.max_input_tokens is not None and tokens > self.max_input_tokens:
                return False
        return True


def matching_rule(rules: Iterable[CompiledRule], request: RouteRequest) -> CompiledRule | None:
    return next((rule for rule in rules if rule.matches(request)), None)


def weighted_order(targets: list[Target], rng: random.Random) -> list[Target]:
    """A random order where each target comes first with probability weight / total (and so
    on for the rest: weighted sampling without replacement). Weight 0 goes last."""
    remaining = [target for target in targets if target.weight > 0]
    ordered: list[Target] = []
    while remaining:
        total = sum(target.weight for target in remaining)
        point = rng.random() * total
        for index, target in enumerate(remaining):
            point -= target.weight
            if point < 0 or index == len(remaining) - 1:
                ordered.append(remaining.pop(index))
                break
    return ordered + [target for target in targets if target.weight == 0]


class _Turns:
    """Round-robin turn counters, per rule and tier, in this process. Each worker takes turns
    on its own: over many requests the spread is even, and taking turns costs no Redis trip."""

    def __init__(self) -> None:
        self._counters: dict[tuple[int, int], itertools.count[int]] = {}

    def next(self, rule_id: int, tier: int) -> int:
        counter = self._counters.setdefault((rule_id, tier), itertools.count())
        return next(counter)

    def reset(self) -> None:
        self._counters.clear()


turns = _Turns()
# Spreading load needs no unpredictability: the standard generator is enough.
_random = random.Random()  # noqa: S311


def ordered_targets(rule: CompiledRule, rng: random.Random | None = None) -> list[Target]:
    """The rule's targets in the order to try them: tier by tier, each by the strategy."""
    rng = rng or _random
    ordered: list[Target] = []
    for tier, members in itertools.groupby(rule.targets, key=lambda target: target.tier):
        tier_targets = list(members)
        if rule.strategy == WEIGHTED:
            tier_targets = weighted_order(tier_targets, rng)
        elif rule.strategy == ROUND_ROBIN and len(tier_targets) > 1:
            start = turns.next(rule.id, tier) % len(tier_targets)
            tier_targets = tier_targets[start:] + tier_targets[:start]
        ordered.extend(tier_targets)
    return ordered


class RuleTable(LoadedTable[CompiledRule]):
    """The enabled rules, compiled, in position order (a dict keeps its insertion order)."""

    def __init__(self) -> None:
        super().__init__("routing rules")

    def _load(self) -> dict[str, CompiledRule]:
        from proxy.rule_services import compiled_rules

        return {str(rule.id): rule for rule in compiled_rules()}

    async def match(self, request: RouteRequest) -> CompiledRule | None:
        rules = await self._current()
        if not rules:
            return None
        return matching_rule(rules.values(), request)


routing_rules = RuleTable()
