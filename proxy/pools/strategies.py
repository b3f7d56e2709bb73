"""The order in which a pool's members are tried, per strategy: pure functions.

Every strategy returns all the members it was given, best first: the first is the one a request
uses, the next ones are where it goes when that key is rate-limited or refused. Members with a
weight of 0 are standbys: they come after every weighted member, whatever the strategy.

- ``round_robin``: members in turn (``turn`` counts this process's requests to the pool);
- ``weighted``: a random draw in proportion to the weights, then the rest drawn the same way;
- ``least_in_flight``: fewest requests in flight first (ties in turn);
- ``least_tokens``: fewest tokens used in the current minute first (ties in turn).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

ROUND_ROBIN = "round_robin"
WEIGHTED = "weighted"
LEAST_IN_FLIGHT = "least_in_flight"
LEAST_TOKENS = "least_tokens"
STRATEGIES = (ROUND_ROBIN, WEIGHTED, LEAST_IN_FLIGHT, LEAST_TOKENS)


class Member(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def weight(self) -> int: ...


M = TypeVar("M", bound=Member)


def _rotated(members: Sequence[M], turn: int) -> list[M]:
    if not members:
        return []
    start = turn % len(members)
    return [*members[start:], *members[:start]]


def _weighted_draw(members: Sequence[M], rng: random.Random) -> list[M]:
    """All members, each next one drawn with probability proportional to its weight."""
    left = list(members)
    order: list[M] = []
    while left:
        total = sum(member.weight for member in left)
        point = rng.random() * total
        for index, member in enumerate(left):
            point -= member.weight
            if point < 0 or index == len(left) - 1:
                order.append(left.pop(index))
                break
    return order


def order_members(
    strategy: str,
    members: Sequence[M],
    *,
    turn: int,
    rng: random.Random,
    in_flight: Callable[[int], int],
    tokens: Callable[[int], int],
) -> list[M]:
    """``members`` in the order to try them under ``strategy`` (unknown: round robin)."""
    weighted = [member for member in members if member.weight > 0]
    standby = [member for member in members if member.weight <= 0]
    if strategy == WEIGHTED:
        first = _weighted_draw(weighted, rng)
    elif strategy == LEAST_IN_FLIGHT:
        first = sorted(_rotated(weighted, turn), key=lambda member: in_flight(member.id))
    elif strategy == LEAST_TOKENS:
        first = sorted(_rotated(weighted, turn), key=lambda member: tokens(member.id))
    else:
        first = _rotated(weighted, turn)
    return first + _rotated(standby, turn)
