"""Type checks for values read from untrusted JSON bodies, shared by every translator.

JSON ``true`` and ``false`` arrive as Python bools, which are ints: a bare ``isinstance(value,
int)`` would take ``"max_tokens": true`` for 1. These checks leave bools out. Pure: no Django,
no I/O.
"""

from __future__ import annotations

from typing import Any, TypeGuard

__all__ = ["is_int", "is_number"]


def is_int(value: Any) -> TypeGuard[int]:
    """An int, but not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or a float, but not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
