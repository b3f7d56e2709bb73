"""Redaction of secrets and personal data from everything the request log stores.

Pure functions over strings and JSON values (no Django, no I/O), run in the usage writer
thread before a body reaches the database, the spool or any log line. What is masked:

- provider keys and tokens: ``sk-…`` / ``sk-ant-…``, AWS access key ids (``AKIA…``), bearer
  tokens, JWTs, PEM private keys (also a block cut before its END line);
- the gateway's own access keys (``gw_<prefix>_<secret>``), whatever follows the prefix;
- email addresses;
- card numbers: 13 to 19 ASCII digits, in groups separated by single spaces or dashes, that
  pass the Luhn check (inside a run of more than 19 digits, every window is checked);
- patterns an installation adds (``Redactor(extra_patterns=...)``).

JSON is walked to any depth: every string value and every object key is redacted. Header
values are kept only for names on an allow-list; every other value is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "[REDACTED]"

_KEY_BODY = r"A-Za-z0-9_\-"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "pem",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
    ),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)?")),
    ("bearer", re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]+")),
    ("gateway_key", re.compile(r"(?i)gw_[a-z0-9]{8}_[A-Za-z0-9_\-]*")),
    ("provider_key", re.compile(rf"sk-[{_KEY_BODY}]{{16,}}")),
    ("aws_key", re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")),
    ("email", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")),
)
# ASCII digits with at most one space or dash between them: the shapes card numbers are
# written in (the Luhn check reads ASCII digits only).
_DIGIT_RUN = re.compile(r"[0-9](?:[ \-]?[0-9]){12,}")
_DIGIT_RUN_BYTES = re.compile(_DIGIT_RUN.pattern.encode())
_DIGITS = re.compile(r"[0-9]+")

_CARD_MIN, _CARD_MAX = 13, 19
# Longer runs are not checked window by window (a run of thousands of digits would cost
# quadratic time); they are masked whole instead, which is safe.
_LONGEST_CHECKED_RUN = 256

# Request and response headers whose values are kept; every other value is masked.
HEADER_ALLOW_LIST = frozenset(
    {
        "accept",
        "accept-encoding",
        "anthropic-beta",
        "anthropic-version",
        "content-length",
        "content-type",
        "openai-organization",
        "user-agent",
        "x-claude-code-session-id",
        "x-stainless-arch",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
    }
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_spans(run: str) -> list[tuple[int, int]]:
    """Spans (in ``run``) of the card numbers in a run of digit groups.

    A card number is a whole sequence of adjacent groups (``4111 1111 1111 1111``, or one group
    of 13 to 19 digits) that passes the Luhn check: digits glued to others without a separator
    do not read as a card. A group longer than a card is checked window by window."""
    if run.isdigit():  # one group, the common case
        groups = [(0, len(run))]
    else:
        groups = [(match.start(), match.end()) for match in _DIGITS.finditer(run)]
    spans: list[tuple[int, int]] = []
    for first, (start, _) in enumerate(groups):
        digits = ""
        for begin, end in groups[first:]:
            digits += run[begin:end]
            if len(digits) > _CARD_MAX:
                break
            if len(digits) >= _CARD_MIN and luhn_valid(digits):
                spans.append((start, end))
    for begin, end in groups:
        if end - begin <= _CARD_MAX:
            continue
        if end - begin > _LONGEST_CHECKED_RUN:
            spans.append((begin, end))
            continue
        spans.extend(_luhn_windows(run[begin:end], begin))
    return spans


# What a digit adds to the Luhn sum in a doubled place.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_windows(digits: str, offset: int) -> list[tuple[int, int]]:
    """Spans (shifted by ``offset``) of the windows of 13 to 19 digits of ``digits`` that pass
    the Luhn check. For each end, the windows grow leftwards one digit at a time and each sum is
    the previous one plus that digit (doubled in every second place from the right): at most
    19 additions per end, where a check per window cost 20 times more (a 22-digit run took
    0.1 ms)."""
    values = [ord(char) - 48 for char in digits]
    spans: list[tuple[int, int]] = []
    for end in range(_CARD_MIN, len(values) + 1):
        total = 0
        for length in range(1, min(_CARD_MAX, end) + 1):
            value = values[end - length]
            total += _DOUBLED[value] if length % 2 == 0 else value
            if length >= _CARD_MIN and total % 10 == 0:
                spans.append((offset + end - length, offset + end))
    return spans


# A text's UTF-8 bytes as the outline of its digit runs: an ASCII digit, space or dash
# becomes "1", any other byte "0" (no byte of a non-ASCII character is ASCII).
_OUTLINE = bytes(ord("1") if chr(byte) in "0123456789 -" else ord("0") for byte in range(256))
_CARD_CHARACTERS = b"1" * _CARD_MIN


def _run_regions(data: bytes) -> Iterator[tuple[int, int]]:
    """Stretches of ``data`` (a text's UTF-8 bytes) that may hold a match of _DIGIT_RUN: 13 or
    more digits, spaces and dashes in a row, 13 of them digits. Every match lies inside one,
    and most texts have none: found with a translation and searches in C, where the regex's
    own scan cost 30 ns a character on text with many digits (18 µs on the benchmark's
    560-character answer)."""
    outline = data.translate(_OUTLINE)
    start = outline.find(_CARD_CHARACTERS)
    while start != -1:
        stop = outline.find(b"0", start)
        if stop == -1:
            stop = len(outline)
        # Model names such as "claude-sonnet-4-5-20250929" have 13 in a row, not 13 digits.
        if len(data[start:stop].translate(None, b" -")) >= _CARD_MIN:
            yield start, stop
        start = outline.find(_CARD_CHARACTERS, stop)


def _digit_runs(text: str) -> Iterator[str]:
    """The matches of _DIGIT_RUN in ``text``, the regex run only in _run_regions."""
    data = text.encode("utf-8", "surrogatepass")
    for start, stop in _run_regions(data):
        for match in _DIGIT_RUN_BYTES.finditer(data, start, stop):
            yield match.group().decode("ascii")


def _mask_cards(text: str) -> str:
    if next(_run_regions(text.encode("utf-8", "surrogatepass")), None) is None:
        return text
    pieces: list[str] = []
    last = 0
    for match in _DIGIT_RUN.finditer(text):
        spans = _card_spans(match.group())
        if not spans:
            continue
        covered = [False] * len(match.group())
        for begin, end in spans:
            for index in range(begin, end):
                covered[index] = True
        pieces.append(text[last : match.start()])
        run = match.group()
        index = 0
        while index < len(run):
            if covered[index]:
                while index < len(run) and covered[index]:
                    index += 1
                pieces.append(MASK)
            else:
                pieces.append(run[index])
                index += 1
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# The most, and the longest, strings a redactor remembers as holding nothing to mask.
_CLEAN_KEPT = 4096
_CLEAN_KEPT_LENGTH = 64

_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")
_SCOPED_FLAGS = {re.IGNORECASE: "i", re.MULTILINE: "m", re.DOTALL: "s", re.VERBOSE: "x"}


def _union(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern matching where any of ``patterns`` matches, each keeping its own flags
    (scoped to its branch); None when they cannot be joined (then each is tried in turn)."""
    branches: list[str] = []
    for pattern in patterns:
        source = pattern.pattern
        if _BACKREFERENCE.search(source):  # group numbers and names change in the union
            return None
        leading = _LEADING_FLAGS.match(source)
        if leading:
            source = source[leading.end() :]
        flags = "".join(letter for flag, letter in _SCOPED_FLAGS.items() if pattern.flags & flag)
        branches.append(f"(?{flags}:{source})" if flags else f"(?:{source})")
    try:
        return re.compile("|".join(branches))
    except re.error:
        return None


# Every built-in pattern's match holds one of these, in lower case. Python's regex engine tries
# the union of the patterns at every position (about 50 ns a character); a text holding none of
# them, found by substring searches in C (a few ns a character), needs no regex scan at all.
_LITERALS = ("-----begin", "eyj", "bearer", "gw_", "sk-", "akia", "asia", "@")


def holds_any(text: str, literals: tuple[str, ...]) -> bool:
    """Whether ``text`` holds any of ``literals``: a loop, not ``any()`` over a generator,
    which costs more than the searches themselves on the short strings most bodies hold."""
    for literal in literals:  # noqa: SIM110 - faster than any() here (see above)
        if literal in text:
            return True
    return False


def _literal_hit(text: str) -> bool:
    return holds_any(text.lower(), _LITERALS)


def _json_text_secrets() -> re.Pattern[str] | None:
    """Where any built-in pattern could match in a JSON text (``Redactor.json_text_clean``):
    the patterns themselves, and "bearer" followed by an escaped whitespace character."""
    escaped_bearer = re.compile(r"(?i)bearer\\[tnrf]")
    return _union([pattern for _, pattern in _PATTERNS] + [escaped_bearer])


class Redactor:
    """Masks secrets in strings, JSON values and headers (see the module docstring)."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self._patterns = [pattern for _, pattern in _PATTERNS] + [
            re.compile(pattern) for pattern in extra_patterns
        ]
        # One scan says whether any pattern matches at all: most strings of a body (roles,
        # model names, stop reasons, prose) hold no secret, and then one scan is all they cost.
        self._any = _union(self._patterns)
        # Short strings found to hold nothing to mask: object keys and values such as roles,
        # types, model names and stop reasons recur in every body, and a set lookup is cheaper
        # than two scans. Nothing masked is ever kept here (only strings left unchanged).
        self._clean: set[str] = set()
        # Installation patterns may use anchors or lookarounds, which match a string alone but
        # not inside the JSON text around it: with any, bodies are always walked.
        self._json_text_check = None if extra_patterns else _json_text_secrets()
        # The literals hold for the built-in patterns only: with installation patterns, every
        # string gets the regex scan.
        self._literals_decide = not extra_patterns

    def json_text_clean(self, text: str) -> bool:
        """Whether ``json()`` would leave every string of the JSON ``text`` (keys included)
        unchanged, decided by scanning the text once, without parsing or walking it.

        Sound for the built-in patterns: none of them anchors a match, and the characters JSON
        escapes (quotes, backslashes, control characters) cannot appear inside a match, except
        the whitespace after "bearer", which a pattern of its own finds escaped. A ``\\u``
        escape can spell anything, so a text with one is never called clean. Card numbers are
        looked for in the text's digit runs: a string's runs are runs of the text too (quotes
        end them), so a text whose runs hold no card has no string that does. False means only
        "walk it": a number or the text between two strings may be what matched."""
        check = self._json_text_check
        if check is None or "\\u" in text:
            return False
        if _literal_hit(text) and check.search(text) is not None:
            return False
        return all(not _card_spans(run) for run in _digit_runs(text))

    def _may_match(self, value: str) -> bool:
        """False when no pattern can match ``value`` (then none is tried)."""
        if self._literals_decide and not _literal_hit(value):
            return False
        return self._any is None or self._any.search(value) is not None

    def text(self, value: str) -> str:
        short = len(value) <= _CLEAN_KEPT_LENGTH
        if short and value in self._clean:
            return value
        redacted = value
        if self._may_match(value):
            for pattern in self._patterns:
                redacted = pattern.sub(MASK, redacted)
        redacted = _mask_cards(redacted)
        if short and redacted == value:
            if len(self._clean) >= _CLEAN_KEPT:
                self._clean.clear()
            self._clean.add(value)
        return redacted

    def json(self, value: Any) -> Any:
        """A copy of a JSON value with every string (values and keys, at any depth) redacted.

        Iterative, so a deeply nested body cannot exhaust the stack."""
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, dict | list):
            return value
        root: Any = {} if isinstance(value, dict) else []
        stack: list[tuple[Any, Any]] = [(value, root)]
        while stack:
            source, target = stack.pop()
            items = source.items() if isinstance(source, dict) else enumerate(source)
            for key, item in items:
                if isinstance(item, dict | list):
                    copy: Any = {} if isinstance(item, dict) else []
                    stack.append((item, copy))
                elif isinstance(item, str):
                    copy = self.text(item)
                else:
                    copy = item
                if isinstance(target, dict):
                    target[self.text(str(key))] = copy
                else:
                    target.append(copy)
        return root

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Header values by allow-list (and redacted even then); others become the mask."""
        kept: dict[str, str] = {}
        for name, value in headers.items():
            lowered = name.lower()
            kept[lowered] = self.text(value) if lowered in HEADER_ALLOW_LIST else MASK
        return kept


_default: Redactor | None = None
_default_patterns: tuple[str, ...] = ()


def redactor() -> Redactor:
    """The installation's redactor (built-in patterns plus GATEWAY_LOG_REDACT_PATTERNS)."""
    global _default, _default_patterns
    from django.conf import settings

    patterns = tuple(settings.GATEWAY_LOG_REDACT_PATTERNS)
    if _default is None or patterns != _default_patterns:
        _default = Redactor(patterns)
        _default_patterns = patterns
    return _default
