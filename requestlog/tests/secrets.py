"""Hypothesis strategies for the secrets the request log must never store, and bodies that
carry them anywhere."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

_URLSAFE = string.ascii_letters + string.digits + "_-"
_B64 = string.ascii_letters + string.digits + "+/"
_SEPARATORS = " \n\t\"',;:=()<>"


def _with_luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


@st.composite
def _card(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from([13, 15, 16, 19]))
    digits = _with_luhn_digit(draw(st.text("0123456789", min_size=length - 1, max_size=length - 1)))
    if draw(st.booleans()) and length == 16:
        sep = draw(st.sampled_from([" ", "-"]))
        return sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    return digits


@st.composite
def _pem(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["", "RSA ", "EC ", "OPENSSH "]))
    lines = draw(st.lists(st.text(_B64, min_size=20, max_size=64), min_size=1, max_size=4))
    return (
        f"-----BEGIN {kind}PRIVATE KEY-----\n"
        + "\n".join(lines)
        + (f"\n-----END {kind}PRIVATE KEY-----")
    )


def secrets() -> st.SearchStrategy[str]:
    token = st.text(_URLSAFE, min_size=20, max_size=48)
    lower = st.text(string.ascii_lowercase + string.digits, min_size=8, max_size=8)
    return st.one_of(
        token.map(lambda body: "sk-ant-api03-" + body),
        token.map(lambda body: "sk-proj-" + body),
        st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map(
            lambda body: "AKIA" + body
        ),
        token.map(lambda body: "Bearer " + body),
        st.tuples(token, token, token).map(lambda parts: "eyJ{}.eyJ{}.{}".format(*parts)),
        st.tuples(lower, st.text(_URLSAFE, min_size=43, max_size=43)).map(
            lambda parts: f"gw_{parts[0]}_{parts[1]}"
        ),
        st.tuples(
            st.text(string.ascii_lowercase + string.digits + "._+", min_size=1, max_size=12).filter(
                lambda local: local[0].isalnum()
            ),
            st.text(string.ascii_lowercase, min_size=2, max_size=10),
        ).map(lambda parts: f"{parts[0]}@{parts[1]}.example.com"),
        _card(),
        _pem(),
    )


def secret_pieces(secret: str) -> list[str]:
    """What must not appear in stored text for ``secret`` to count as kept out: the secret
    itself, and for multi-line or prefixed secrets their secret parts."""
    if secret.startswith("Bearer "):
        return [secret[len("Bearer ") :]]
    if "PRIVATE KEY-----" in secret:
        return [line for line in secret.split("\n")[1:] if "-----" not in line and len(line) >= 16]
    return [secret]


def _plant(text: str, secret: str, position: int, sep: str) -> str:
    position = min(position, len(text))
    return text[:position] + sep + secret + sep + text[position:]


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _substitute(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in mapping.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [_substitute(item, mapping) for item in value]
    if isinstance(value, dict):
        return {
            _substitute(key, mapping): _substitute(item, mapping) for key, item in value.items()
        }
    return value


def background_holds(background: Any, secret: str) -> bool:
    """Whether the random text around the planted secrets holds a piece of ``secret`` by chance
    (then its absence from stored text cannot be asserted)."""
    import json

    text = json.dumps(background, ensure_ascii=False)
    return any(piece in text for piece in secret_pieces(secret))


@st.composite
def planted_bodies(draw: st.DrawFn) -> tuple[Any, list[str], Any]:
    """A random JSON object with one to three secrets planted in strings (values or keys) at
    random depths; returns the body, the planted secrets, and the body without them."""
    body: dict[str, Any] = {"model": "claude-sonnet-4-6", "payload": draw(_json)}
    planted: list[str] = []
    for number in range(draw(st.integers(1, 3))):
        secret = draw(secrets())
        planted.append(secret)
        sep = draw(st.sampled_from(_SEPARATORS))
        placeholder = f"\x00{number}\x00"
        text = _plant(draw(st.text(max_size=20)), placeholder, draw(st.integers(0, 20)), sep)
        node: Any = body
        for _ in range(draw(st.integers(0, 4))):
            child: Any = draw(st.sampled_from([{}, []]))
            if isinstance(node, dict):
                node[draw(st.text(max_size=6))] = child
            else:
                node.append(child)
            node = child
        if isinstance(node, dict):
            if draw(st.booleans()):
                node[text] = draw(_json_scalars)
            else:
                node[draw(st.text(max_size=6))] = text
        else:
            node.append(text)
    mapping = {f"\x00{number}\x00": secret for number, secret in enumerate(planted)}
    blank = dict.fromkeys(mapping, "")
    return _substitute(body, mapping), planted, _substitute(body, blank)
