"""What the Gemini API rejects with a 400 INVALID_ARGUMENT, for the fake Gemini upstream.

Bodies are walked against google-genai's pydantic types (`Content`, `Tool`, `GenerationConfig`,
...): a key is accepted in its camelCase wire form or its snake_case form (the API's JSON parser
takes both), a key the type does not have is an error at any depth, an enum value the type does not
list is an error (google-genai only warns), `bytes` fields must hold base64. The request envelopes
(`generateContent`, `countTokens`, `embedContent`, `batchEmbedContents`) are declared here in the
same style, since google-genai's own parameter types are SDK-side shapes, not wire bodies.

Then the rules no type expresses: contents non-empty, roles `user`/`model`, a functionResponse
answers an earlier functionCall of that name, at most 5 stop sequences, temperature 0-2, top_p 0-1.
Pure functions over parsed JSON; the thought-signature round trip needs the fake's memory and is
checked in `fake_gemini.py`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import types as python_types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
from google.genai import types
from pydantic.alias_generators import to_camel

MAX_STOP_SEQUENCES = 5
ROLES = ("user", "model")
TASK_TYPES = Literal[
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
]


class _WireBody(pydantic.BaseModel):
    """A request envelope: camelCase on the wire, like google-genai's types."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


class GenerateContentBody(_WireBody):
    """`POST models/{model}:generateContent` and `:streamGenerateContent`."""

    model: str | None = None  # only inside countTokens' generateContentRequest
    contents: list[types.Content] | None = None
    system_instruction: types.Content | None = None
    tools: list[types.Tool] | None = None
    tool_config: types.ToolConfig | None = None
    generation_config: types.GenerationConfig | None = None
    safety_settings: list[types.SafetySetting] | None = None
    cached_content: str | None = None


class CountTokensBody(_WireBody):
    contents: list[types.Content] | None = None
    generate_content_request: GenerateContentBody | None = None


class EmbedContentBody(_WireBody):
    model: str | None = None
    content: types.Content | None = None
    task_type: TASK_TYPES | None = None
    title: str | None = None
    output_dimensionality: int | None = None


class BatchEmbedContentsBody(_WireBody):
    requests: list[EmbedContentBody] | None = None


@typing.no_type_check
def _field_index(model: type[pydantic.BaseModel]) -> dict[str, tuple[str, Any]]:
    """Accepted key (alias or name) -> (field name, annotation)."""
    index: dict[str, tuple[str, Any]] = {}
    for name, field in model.model_fields.items():
        index[name] = (name, field.annotation)
        if field.alias:
            index[field.alias] = (name, field.annotation)
    return index


_FIELD_INDEXES: dict[type[pydantic.BaseModel], dict[str, tuple[str, Any]]] = {}


def _fields(model: type[pydantic.BaseModel]) -> dict[str, tuple[str, Any]]:
    index = _FIELD_INDEXES.get(model)
    if index is None:
        index = _FIELD_INDEXES[model] = _field_index(model)
    return index


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def walk(value: Any, annotation: Any, path: str, problems: list[str]) -> None:
    """Append to `problems` every way `value` (parsed JSON) does not fit `annotation`."""
    origin = get_origin(annotation)
    if annotation is Any or annotation is object:
        return
    if origin is Union or origin is python_types.UnionType:
        members = [member for member in get_args(annotation) if member is not type(None)]
        if value is None:
            return
        if len(members) == 1:
            walk(value, members[0], path, problems)
            return
        attempts = []
        for member in members:
            found: list[str] = []
            walk(value, member, path, found)
            if not found:
                return
            attempts.extend(found)
        problems.extend(attempts)
        return
    if origin is Literal:
        if value not in get_args(annotation):
            problems.append(f"{path}: {value!r} is not one of {list(get_args(annotation))}")
        return
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        (item,) = get_args(annotation)
        for position, element in enumerate(value):
            walk(element, item, f"{path}[{position}]", problems)
        return
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        _, item = get_args(annotation)
        for key, element in value.items():
            walk(element, item, f"{path}.{key}", problems)
        return
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        _walk_model(value, annotation, path, problems)
        return
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        _check_enum(value, annotation, path, problems)
        return
    _check_scalar(value, annotation, path, problems)


def _walk_model(
    value: Any, model: type[pydantic.BaseModel], path: str, problems: list[str]
) -> None:
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a {model.__name__} object, got {type(value).__name__}")
        return
    fields = _fields(model)
    seen: dict[str, str] = {}
    for key, element in value.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            problems.append(
                f'{where}: Invalid JSON payload received. Unknown name "{key}" '
                f"({model.__name__} has no such field)"
            )
            continue
        name, annotation = fields[key]
        if name in seen:
            problems.append(f"{where}: the field is also given as {seen[name]!r}")
        seen[name] = key
        walk(element, annotation, where, problems)


def _check_enum(value: Any, enum_type: type[enum.Enum], path: str, problems: list[str]) -> None:
    allowed = [member.value for member in enum_type]
    # google-genai's enums are case-insensitive; a value outside them is an error here.
    if not isinstance(value, str) or value.upper() not in {str(item).upper() for item in allowed}:
        problems.append(
            f"{path}: Invalid value {value!r} for {enum_type.__name__}; expected one of {allowed}"
        )


def _check_scalar(value: Any, annotation: Any, path: str, problems: list[str]) -> None:
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif annotation is str:
        ok = isinstance(value, str)
    elif annotation is bytes:
        ok = isinstance(value, str) and _is_base64(value)
    else:  # datetimes and other scalars travel as strings
        ok = isinstance(value, str)
    if not ok:
        problems.append(f"{path}: expected {_type_name(annotation)}, got {value!r:.60}")


def _is_base64(text: str) -> bool:
    padded = text.encode("ascii", "replace") + b"=" * (-len(text) % 4)
    for alphabet in (b"+/", b"-_"):  # the standard and the URL-safe alphabets
        try:
            base64.b64decode(padded, altchars=alphabet, validate=True)
        except (ValueError, binascii.Error):
            continue
        return True
    return False


def field_value(data: dict[str, Any], camel: str) -> Any:
    """A field by its camelCase or snake_case key."""
    if camel in data:
        return data[camel]
    snake = "".join(f"_{char.lower()}" if char.isupper() else char for char in camel)
    return data.get(snake)


def parts_of(content: Any) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [part for part in parts or [] if isinstance(part, dict)]


def _contents_rules(contents: Any, path: str) -> list[str]:
    problems: list[str] = []
    if not contents:
        return [f"{path}: contents is not specified"]
    called: set[str] = set()
    for position, content in enumerate(contents):
        role = content.get("role")
        if role is not None and role not in ROLES:
            problems.append(
                f"{path}[{position}].role: Please use a valid role: {', '.join(ROLES)}."
            )
        if not parts_of(content):
            problems.append(f"{path}[{position}].parts: must contain at least one part")
        for part_position, part in enumerate(parts_of(content)):
            where = f"{path}[{position}].parts[{part_position}]"
            call = field_value(part, "functionCall")
            if isinstance(call, dict) and call.get("name"):
                called.add(call["name"])
            response = field_value(part, "functionResponse")
            if isinstance(response, dict) and response.get("name") not in called:
                problems.append(
                    f"{where}.functionResponse.name: {response.get('name')!r} answers no earlier "
                    "functionCall; please ensure that function response turn comes immediately "
                    "after a function call turn"
                )
    return problems


def _generation_rules(config: Any, path: str) -> list[str]:
    if not isinstance(config, dict):
        return []
    problems: list[str] = []
    stops = field_value(config, "stopSequences")
    if isinstance(stops, list) and len(stops) > MAX_STOP_SEQUENCES:
        problems.append(
            f"{path}.stopSequences: at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}"
        )
    for key, low, high in (("temperature", 0, 2), ("topP", 0, 1)):
        value = field_value(config, key)
        if isinstance(value, int | float) and not low <= value <= high:
            problems.append(f"{path}.{key}: {value} is out of range [{low}, {high}]")
    count = field_value(config, "candidateCount")
    if isinstance(count, int) and count < 1:
        problems.append(f"{path}.candidateCount: must be at least 1")
    return problems


def _structure(body: Any, model: type[pydantic.BaseModel]) -> list[str]:
    problems: list[str] = []
    _walk_model(body, model, "", problems)
    return problems


def _generate_rules(body: dict[str, Any], path: str = "") -> list[str]:
    prefix = f"{path}." if path else ""
    problems = _contents_rules(field_value(body, "contents"), f"{prefix}contents")
    problems += _generation_rules(
        field_value(body, "generationConfig"), f"{prefix}generationConfig"
    )
    return problems


def validate_generate_content(body: Any) -> list[str]:
    """Problems with a `:generateContent` / `:streamGenerateContent` body."""
    problems = _structure(body, GenerateContentBody)
    if problems:
        return problems
    if field_value(body, "model") is not None:
        problems.append('model: Invalid JSON payload received. Unknown name "model"')
    return problems + _generate_rules(body)


def validate_count_tokens(body: Any) -> list[str]:
    """Problems with a `:countTokens` body: `contents` or `generateContentRequest`, not both."""
    problems = _structure(body, CountTokensBody)
    if problems:
        return problems
    contents = field_value(body, "contents")
    request = field_value(body, "generateContentRequest")
    if (contents is None) == (request is None):
        return ["(body): exactly one of contents or generateContentRequest must be set"]
    if request is not None:
        if not field_value(request, "model"):
            problems.append("generateContentRequest.model: is required")
        return problems + _generate_rules(request, "generateContentRequest")
    return _contents_rules(contents, "contents")


def _embed_rules(body: dict[str, Any], path: str) -> list[str]:
    prefix = f"{path}." if path else ""
    content = field_value(body, "content")
    if content is None:
        return [f"{prefix}content: is required"]
    problems: list[str] = []
    if not parts_of(content) or not all(
        isinstance(part.get("text"), str) for part in parts_of(content)
    ):
        problems.append(f"{prefix}content.parts: must be text parts, at least one")
    dimensions = field_value(body, "outputDimensionality")
    if isinstance(dimensions, int) and dimensions < 1:
        problems.append(f"{prefix}outputDimensionality: must be at least 1")
    return problems


def validate_embed_content(body: Any) -> list[str]:
    """Problems with an `:embedContent` body."""
    problems = _structure(body, EmbedContentBody)
    return problems or _embed_rules(body, "")


def validate_batch_embed_contents(body: Any, *, model: str) -> list[str]:
    """Problems with a `:batchEmbedContents` body; each request names the URL's model."""
    problems = _structure(body, BatchEmbedContentsBody)
    if problems:
        return problems
    requests = field_value(body, "requests")
    if not requests:
        return ["requests: must contain at least one request"]
    for position, request in enumerate(requests):
        path = f"requests[{position}]"
        named = field_value(request, "model")
        if named != f"models/{model}":
            problems.append(f"{path}.model: {named!r} must be 'models/{model}', the URL's model")
        problems += _embed_rules(request, path)
    return problems
