"""A local token estimate of an Anthropic Messages request: no tokenizer, no download, no network.

Text is counted by features a BPE tokenizer is sensitive to, each with a weight fitted (least
squares on relative error) to Anthropic's published Claude tokenizer over a corpus of English
and eleven other languages, Python, JavaScript, CSS and tool JSON (governance.estimator: the
corpus, its real counts and the measured error, also stated in the README):

- ASCII words (``[A-Za-z]+``), and among them long words (8 letters or more), which split;
- digits, ASCII punctuation and symbols, line breaks with their indentation;
- non-ASCII characters by script (accented Latin, Cyrillic, Greek, Arabic, Devanagari, Thai,
  Han, kana, Hangul, the rest), whose costs differ by a factor of six.

The sum is then raised by ``MARGIN`` (10%): on the corpus that leaves about one sample in twelve
under its real count, by 10% at worst, which is the safe side for a client deciding when to
compact its context and for budget reservations.

Long texts are not scanned whole: three slices of ``SLICE`` characters (start, middle, end) are,
and the result is scaled to the text's length, so a request of any size costs about the same
(tens of microseconds). Images count Anthropic's documented (width × height) / 750 when the
size is unknown to us as a 1,000-token allowance, documents 1,500, and each message and tool a
small overhead. Pure: no Django, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import orjson

MARGIN = 1.1
SLICE = 700
_MESSAGE_OVERHEAD = 4
_TOOL_OVERHEAD = 12
_IMAGE_TOKENS = 1_000
_DOCUMENT_TOKENS = 1_500

# (pattern, tokens per match), fitted on the corpus against the Claude tokenizer. The ASCII
# patterns define the features; ``_features`` counts the same matches without running them.
_ASCII_FEATURES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"[A-Za-z]+"), 1.119),
    (re.compile(r"[A-Za-z]{8,}"), 0.860),
    (re.compile(r"\d"), 0.700),
    (re.compile(r"[!-/:-@\[-`{-~]"), 0.617),
    (re.compile(r"\n[ \t]*"), 1.064),
)
_SCRIPT_FEATURES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile("[\u00c0-\u024f]"), 3.126),  # accented Latin
    (re.compile("[\u0400-\u04ff]"), 0.569),  # Cyrillic
    (re.compile("[\u0370-\u03ff]"), 1.329),  # Greek
    (re.compile("[\u0600-\u06ff]"), 1.046),  # Arabic
    (re.compile("[\u0900-\u097f]"), 1.413),  # Devanagari
    (re.compile("[\u0e00-\u0e7f]"), 1.823),  # Thai
    (re.compile("[\u3400-\u9fff\uf900-\ufaff]"), 0.823),  # Han
    (re.compile("[\u3040-\u30ff]"), 1.027),  # kana
    (re.compile("[\uac00-\ud7af]"), 1.377),  # Hangul
)
_OTHER_NON_ASCII = 0.462


def _byte_table(classes: dict[bytes, bytes], default: bytes) -> bytes:
    table = bytearray(default * 256)
    for members, cls in classes.items():
        for byte in members:
            table[byte] = cls[0]
    return bytes(table)


_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGITS = b"0123456789"
_SYMBOLS = bytes(b for b in range(0x21, 0x7F) if b not in _LETTERS and b not in _DIGITS)
# The ASCII features are counted on the text's UTF-8 bytes, translated to one class per byte
# and counted with bytes.count: the same counts as the regular expressions above (a non-ASCII
# character's bytes are all >= 0x80, so they belong to no ASCII class and end a word just as
# they end a ``[A-Za-z]+`` match), at a tenth of the cost of five ``findall`` scans.
_CLASSES = _byte_table({_LETTERS: b"a", _DIGITS: b"0", _SYMBOLS: b"!", b"\n": b"\n"}, b" ")
_WORDS = _byte_table({_LETTERS: b"a"}, b" ")
_LONG_WORD = b"a" * 8
# ``\d`` also matches the decimal digits of other scripts; those are counted apart.
_NON_ASCII_DIGIT = re.compile(r"[^\D0-9]")
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
(_WORD, _LONG, _DIGIT, _SYMBOL, _LINE) = (weight for _, weight in _ASCII_FEATURES)


def _features(text: str) -> float:
    raw = text.encode("utf-8", "surrogatepass")
    classes = raw.translate(_CLASSES)
    words = raw.translate(_WORDS)
    starts_word = words[:1] == b"a"
    tokens = (
        (words.count(b" a") + starts_word) * _WORD
        + (words.count(b" " + _LONG_WORD) + words.startswith(_LONG_WORD)) * _LONG
        + classes.count(b"0") * _DIGIT
        + classes.count(b"!") * _SYMBOL
        + classes.count(b"\n") * _LINE
    )
    if not text.isascii():
        # The script patterns match single non-ASCII characters: run them over those alone
        # (code and English prose hold a few among thousands of ASCII ones).
        others = _ASCII_RUNS.sub("", text)
        tokens += len(_NON_ASCII_DIGIT.findall(others)) * _DIGIT
        in_scripts = 0
        for pattern, weight in _SCRIPT_FEATURES:
            count = len(pattern.findall(others))
            in_scripts += count
            tokens += count * weight
        tokens += (len(others) - in_scripts) * _OTHER_NON_ASCII
    return tokens


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of a piece of text (see the module doc); 0 for an empty one."""
    return estimate_texts_tokens([text])


def _slice(texts: list[str], start: int, size: int) -> str:
    """``size`` characters from ``start`` in the concatenation of ``texts``, without building
    the concatenation."""
    out: list[str] = []
    offset = 0
    for text in texts:
        end = offset + len(text)
        if end > start and size > 0:
            piece = text[max(0, start - offset) : max(0, start - offset) + size]
            out.append(piece)
            size -= len(piece)
            start += len(piece)
        offset = end
        if size <= 0:
            break
    return "".join(out)


def estimate_texts_tokens(texts: list[str]) -> int:
    """Estimated tokens of several texts together; long ones are sampled (see the module doc),
    so the cost does not grow with their length."""
    length = sum(len(text) for text in texts)
    if not length:
        return 0
    if length <= 3 * SLICE:
        raw = _features("\n".join(texts))
    else:
        middle = (length - SLICE) // 2
        sample = "\n".join(
            (
                _slice(texts, 0, SLICE),
                _slice(texts, middle, SLICE),
                _slice(texts, length - SLICE, SLICE),
            )
        )
        raw = _features(sample) * length / len(sample)
    return max(1, math.ceil(raw * MARGIN))


def _json_text(value: Any) -> str:
    """Compact JSON of a tool's schema or input, as the characters the model reads (non-ASCII
    as itself, not as ``\\u`` escapes); orjson is a tenth of the standard library's cost here,
    which takes what orjson refuses (lone surrogates, integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), default=str)


def _blocks(content: Any) -> Iterable[Any]:
    if isinstance(content, str):
        yield {"type": "text", "text": content}
    elif isinstance(content, list):
        yield from content


def _block_texts(block: Any, texts: list[str]) -> int:
    """Collects the block's text into ``texts``; returns the tokens of what is not text."""
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        texts.append(str(block.get("text") or ""))
    elif kind == "image":
        return _IMAGE_TOKENS
    elif kind == "document":
        return _DOCUMENT_TOKENS
    elif kind == "tool_use":
        texts.append(str(block.get("name") or ""))
        texts.append(_json_text(block.get("input")))
    elif kind == "tool_result":
        return sum(_block_texts(inner, texts) for inner in _blocks(block.get("content")))
    elif kind == "thinking":
        texts.append(str(block.get("thinking") or ""))
    elif kind != "redacted_thinking":
        texts.append(_json_text(block))
    return 0


def estimate_input_tokens(request: dict[str, Any]) -> int:
    """Estimated input tokens of a hub request (system, messages and tools); at least 1.

    All text is estimated at once, so a request of hundreds of blocks costs one estimate, not
    hundreds."""
    texts: list[str] = []
    fixed = sum(_block_texts(block, texts) for block in _blocks(request.get("system")))
    for message in request.get("messages") or []:
        if not isinstance(message, dict):
            continue
        fixed += _MESSAGE_OVERHEAD
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for block in content if isinstance(content, list) else ():
            # Text blocks inline: long conversations are hundreds of them.
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            else:
                fixed += _block_texts(block, texts)
    tools = [tool for tool in request.get("tools") or [] if tool is not None]
    if tools:
        fixed += _TOOL_OVERHEAD * len(tools)
        texts.append(_json_text(tools))
    return max(fixed + estimate_texts_tokens(texts), 1)
