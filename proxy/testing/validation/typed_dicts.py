"""Strict pydantic models built from an SDK's request TypedDicts (openai-python's `*_params`).

A `TypeAdapter` over those TypedDicts is too lenient for a fake upstream: unknown keys pass, and
because the SDK modules use `from __future__ import annotations`, `__required_keys__` is computed
from strings and misses `Required[...]` keys. `strict_model` instead resolves every annotation with
`typing.get_type_hints(include_extras=True)`, decides required keys itself (`Required`,
`NotRequired`, then the declaring class's `total`), and builds a model per TypedDict with unknown
keys forbidden and strict types at every depth. `Iterable[X]` and `SequenceNotStr[X]` become lists
(JSON has nothing else); a union of TypedDicts that share a required `Literal` key (`role`,
`type`) is validated as a tagged union, so an error names the member that was meant.

Only the structure lives here; the rules no type expresses are in `openai_rules.py`.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from functools import cache
from typing import Annotated, Any, Literal, NotRequired, Required, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from typing_extensions import is_typeddict

STRICT_CONFIG = ConfigDict(extra="forbid", strict=True)

_SEQUENCE_ORIGINS = frozenset(
    {
        list,
        collections.abc.Iterable,
        collections.abc.Sequence,
        collections.abc.Collection,
    }
)
_MAPPING_ORIGINS = frozenset({dict, collections.abc.Mapping})


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _own_totality(typed_dict: type) -> dict[str, bool]:
    """Each key's `total` flag, taken from the TypedDict that declared it."""
    totals: dict[str, bool] = {}
    inherited: set[str] = set()
    for base in getattr(typed_dict, "__orig_bases__", ()):
        if is_typeddict(base):
            base_totals = _own_totality(base)
            totals.update(base_totals)
            inherited.update(base_totals)
    for key in typed_dict.__annotations__:
        if key not in inherited:
            totals[key] = bool(getattr(typed_dict, "__total__", True))
    return totals


@cache
def typed_dict_fields(typed_dict: type) -> dict[str, tuple[bool, Any]]:
    """Key -> (required, resolved annotation without Required/NotRequired/Annotated)."""
    hints = typing.get_type_hints(typed_dict, include_extras=True)
    totals = _own_totality(typed_dict)
    fields: dict[str, tuple[bool, Any]] = {}
    for key, hint in hints.items():
        annotation = _strip_annotated(hint)
        required = totals.get(key, True)
        origin = get_origin(annotation)
        if origin is Required:
            required, annotation = True, get_args(annotation)[0]
        elif origin is NotRequired:
            required, annotation = False, get_args(annotation)[0]
        fields[key] = (required, _strip_annotated(annotation))
    return fields


def _literal_key_values(typed_dict: type) -> dict[str, set[Any]]:
    """Required keys annotated with a Literal, and their allowed values."""
    found: dict[str, set[Any]] = {}
    for key, (required, annotation) in typed_dict_fields(typed_dict).items():
        if required and get_origin(annotation) is Literal:
            found[key] = set(get_args(annotation))
    return found


def _tagged_union(members: list[type]) -> Any | None:
    """A tagged union over TypedDicts told apart by one required Literal key, or None."""
    literal_keys = [_literal_key_values(member) for member in members]
    shared = set(literal_keys[0]).intersection(*literal_keys[1:])
    for key in sorted(shared):
        tags: dict[Any, str] = {}
        disjoint = True
        for member, keys in zip(members, literal_keys, strict=True):
            for value in keys[key]:
                if value in tags:
                    disjoint = False
                tags[value] = member.__name__
        if not disjoint:
            continue
        allowed = sorted(str(value) for value in tags)

        def pick(value: Any, key: str = key, tags: dict[Any, str] = tags) -> str | None:
            if isinstance(value, dict):
                return tags.get(value.get(key))
            return None

        choices = tuple(Annotated[strict_model(member), Tag(member.__name__)] for member in members)
        return Annotated[
            Union[choices],  # noqa: UP007 (a tuple of members needs the subscript form)
            Discriminator(
                pick,
                custom_error_type="invalid_union_member",
                custom_error_message=f"an object whose {key!r} is one of {allowed}",
            ),
        ]
    return None


def strict_annotation(annotation: Any) -> Any:
    """The pydantic annotation validating what `annotation` (from a TypedDict) allows."""
    annotation = _strip_annotated(annotation)
    if annotation is Any or annotation is object:
        return Any
    if is_typeddict(annotation):
        return strict_model(annotation)
    origin = get_origin(annotation)
    if origin is Literal or annotation in (str, int, float, bool, type(None)):
        return annotation
    if origin is Union or origin is types.UnionType:
        members = list(get_args(annotation))
        typed_dicts = [member for member in members if is_typeddict(member)]
        others = [strict_annotation(member) for member in members if not is_typeddict(member)]
        tagged = _tagged_union(typed_dicts) if len(typed_dicts) > 1 else None
        if tagged is not None:
            alternatives = [tagged, *others]
        else:
            alternatives = [strict_model(member) for member in typed_dicts] + others
        if len(alternatives) == 1:
            return alternatives[0]
        return Union[tuple(alternatives)]  # noqa: UP007
    if origin in _SEQUENCE_ORIGINS or (
        isinstance(origin, type) and issubclass(origin, collections.abc.Sequence)
    ):
        (item,) = get_args(annotation) or (Any,)
        return list[strict_annotation(item)]  # type: ignore[misc]
    if origin in _MAPPING_ORIGINS:
        key, value = get_args(annotation) or (str, Any)
        return dict[strict_annotation(key), strict_annotation(value)]  # type: ignore[misc]
    if origin is None and isinstance(annotation, type):
        return annotation
    raise TypeError(f"no strict form for the annotation {annotation!r}")


@cache
def strict_model(typed_dict: type) -> type[BaseModel]:
    """A pydantic model accepting exactly the dicts `typed_dict` describes (by wire key)."""
    definitions: dict[str, Any] = {}
    for position, (key, (required, annotation)) in enumerate(typed_dict_fields(typed_dict).items()):
        # Generated attribute names: wire keys such as "schema" would shadow BaseModel members.
        field = Field(alias=key) if required else Field(default=None, alias=key)
        definitions[f"field_{position}"] = (strict_annotation(annotation), field)
    return pydantic.create_model(typed_dict.__name__, __config__=STRICT_CONFIG, **definitions)


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _is_union_label(part: int | str) -> bool:
    """Whether a pydantic error location part names a union member rather than a wire key
    (member models are named after their TypedDicts, which are CamelCase; wire keys are not)."""
    if isinstance(part, int):
        return False
    return part[:1].isupper() or "[" in part or part in _TYPE_LABELS


def validation_messages(error: pydantic.ValidationError) -> list[str]:
    """One line per problem: the dotted path of wire keys, then pydantic's message."""
    messages = []
    for problem in error.errors(include_url=False):
        location = ".".join(str(part) for part in problem["loc"] if not _is_union_label(part))
        messages.append(f"{location or '(body)'}: {problem['msg']}")
    return messages


def validate_against(typed_dict: type, body: Any) -> list[str]:
    """Problems found validating `body` against the strict form of `typed_dict` ([] when fine)."""
    try:
        strict_model(typed_dict).model_validate(body)
    except pydantic.ValidationError as error:
        return validation_messages(error)
    return []
