"""A local token estimate of an Anthropic Messages request: no tokenizer download, no network.

The heuristic: text is counted at about four characters per token (code and JSON come out
denser, so they are counted by a character class mix), images at Anthropic's documented
(width × height) / 750 when the size is unknown to us we take a 1,000-token allowance, and each
message and tool carries a small overhead. It errs on the high side, which is the safe side for
a client deciding when to compact its context. Pure: no Django, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

_MESSAGE_OVERHEAD = 4
_TOOL_OVERHEAD = 12
_IMAGE_TOKENS = 1_000
_DOCUMENT_TOKENS = 1_500


def estimate_text_tokens(text: str) -> int:
    """Tokens of a piece of text: ~4 characters a token for prose, denser for symbols."""
    if not text:
        return 0
    symbols = sum(1 for char in text if not char.isalnum() and not char.isspace())
    non_ascii = sum(1 for char in text if ord(char) > 127)
    letters = len(text) - symbols - non_ascii
    return math.ceil(letters / 4 + symbols / 1.5 + non_ascii / 1.2)


def _blocks(content: Any) -> Iterable[Any]:
    if isinstance(content, str):
        yield {"type": "text", "text": content}
    elif isinstance(content, list):
        yield from content


def _block_tokens(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return estimate_text_tokens(str(block.get("text") or ""))
    if kind == "image":
        return _IMAGE_TOKENS
    if kind == "document":
        return _DOCUMENT_TOKENS
    if kind == "tool_use":
        return estimate_text_tokens(str(block.get("name") or "")) + estimate_text_tokens(
            json.dumps(block.get("input"), separators=(",", ":"))
        )
    if kind == "tool_result":
        return sum(_block_tokens(inner) for inner in _blocks(block.get("content")))
    if kind == "thinking":
        return estimate_text_tokens(str(block.get("thinking") or ""))
    return estimate_text_tokens(json.dumps(block, separators=(",", ":"), default=str))


def estimate_input_tokens(request: dict[str, Any]) -> int:
    """Estimated input tokens of a hub request (system, messages and tools); at least 1."""
    total = sum(_block_tokens(block) for block in _blocks(request.get("system")))
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            total += _MESSAGE_OVERHEAD
            total += sum(_block_tokens(block) for block in _blocks(message.get("content")))
    for tool in request.get("tools") or []:
        total += _TOOL_OVERHEAD + estimate_text_tokens(
            json.dumps(tool, separators=(",", ":"), default=str)
        )
    return max(total, 1)
