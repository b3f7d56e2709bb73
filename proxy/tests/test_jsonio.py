"""The hot path's JSON: orjson's speed, the standard library's acceptance."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import jsonio

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    # Beyond 64 bits orjson reads numbers as floats (tested below).
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_round_trips_whatever_the_standard_library_accepts(value: object) -> None:
    assert jsonio.loads(jsonio.dumps(value)) == value
    text = json.dumps(value)
    assert jsonio.loads(text) == json.loads(text)


def test_what_orjson_refuses_still_parses() -> None:
    raw = b'{"s": "\\ud800"}'
    assert jsonio.loads(raw) == json.loads(raw) == {"s": "\ud800"}
    # Past orjson's 1,024 levels the standard parser decides, and refuses as it did before.
    with pytest.raises(RecursionError):
        jsonio.loads(b"[" * 1100 + b"]" * 1100)


def test_integers_beyond_64_bits_parse_as_numbers() -> None:
    # orjson reads them as floats: no API accepts such counts, and nothing fails on them.
    assert jsonio.loads(b'{"n": 100000000000000000000000}')["n"] == pytest.approx(1e23)


def test_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsonio.loads(b"{not json")


def test_output_is_compact_utf8() -> None:
    assert jsonio.dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()
    assert jsonio.dumps({"n": 10**20}) == b'{"n":100000000000000000000}'
