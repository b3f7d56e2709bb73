"""OpenAI embeddings requests and answers, as the Gemini and Ollama translators need them.

- ``openai_embedding_texts`` reads an OpenAI ``POST /v1/embeddings`` body's ``input`` as a list
  of strings (token-id arrays cannot be sent to providers that tokenise themselves: they are a
  ``TranslationError`` naming ``input``) and ``openai_dimensions`` its ``dimensions``.
- ``openai_embedding_list`` builds the OpenAI answer from plain vectors, in the encoding the client
  asked for; ``embedding_to_base64`` is OpenAI's ``base64`` encoding (little-endian float32, which
  is what openai-python decodes with ``np.frombuffer(..., dtype="float32")``).

Pure: no Django, no I/O.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from typing import Any

from proxy.translation.hub import JSON, TranslationError

__all__ = [
    "embedding_to_base64",
    "openai_dimensions",
    "openai_embedding_list",
    "openai_embedding_texts",
    "openai_encoding_format",
]

ENCODING_FORMATS = frozenset({"float", "base64"})


def openai_embedding_texts(body: JSON) -> list[str]:
    """The texts to embed: ``input`` as a string or a non-empty list of strings."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, list) and value:
        raise TranslationError(
            "input must be a string or a list of strings: token arrays cannot be sent to this"
            " model's provider",
            param="input",
        )
    raise TranslationError("input must be a string or a non-empty list of strings", param="input")


def openai_dimensions(body: JSON) -> int | None:
    """``dimensions`` when given: a positive integer."""
    value = body.get("dimensions")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranslationError("dimensions must be a positive integer", param="dimensions")
    return value


def openai_encoding_format(body: JSON) -> str:
    value = body.get("encoding_format")
    if value is None:
        return "float"
    if value not in ENCODING_FORMATS:
        raise TranslationError(
            "encoding_format must be 'float' or 'base64'", param="encoding_format"
        )
    return str(value)


def embedding_to_base64(values: Sequence[float]) -> str:
    """One vector in OpenAI's ``base64`` encoding: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def openai_embedding_list(
    vectors: Sequence[Sequence[float]],
    *,
    model: str,
    prompt_tokens: int,
    encoding_format: str = "float",
) -> JSON:
    """The OpenAI embeddings answer for ``vectors`` in input order."""
    data: list[JSON] = []
    for index, vector in enumerate(vectors):
        values = [_as_float(value) for value in vector]
        embedding: Any = embedding_to_base64(values) if encoding_format == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"an embedding value is not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("an embedding value is not finite")
    return number
