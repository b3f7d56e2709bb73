"""Redaction: every kind of secret, at any depth of a JSON body, in headers; card numbers by
Luhn; installation patterns; and the property that nothing planted survives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from requestlog.redaction import MASK, Redactor, _card_spans, _mask_cards, luhn_valid
from requestlog.tests.secrets import background_holds, planted_bodies, secret_pieces, secrets

red = Redactor()


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-AbCdEf0123456789_-xyzXYZ0123456789",
        "sk-proj-0123456789abcdefghijKLMNOP",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "Bearer abc.def-ghi_jkl~mno+pqr/stu=",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "gw_k3x9q2mb_" + "A" * 43,
        "jane.doe+tag@mail.example.co.uk",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "378282246310005",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nqwerty\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (cut short)",
    ],
)
def test_each_kind_of_secret_is_masked(secret: str) -> None:
    out = red.text(f"before {secret} after")
    assert MASK in out
    for piece in secret_pieces(secret):
        assert piece not in out
    assert out.startswith("before ")


def test_ordinary_text_and_numbers_are_kept() -> None:
    text = "Order 12345 shipped on 2026-12-03, total 99.50; call +1 555 0100. Task: skim docs."
    assert red.text(text) == text
    assert not luhn_valid("4111111111111112")
    assert red.text("4111111111111112") == "4111111111111112"


def test_a_card_number_inside_a_longer_digit_run_is_masked() -> None:
    out = red.text("ref 99411111111111111107")
    assert "4111111111111111" not in out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=20, max_size=80))
def test_every_card_window_of_a_long_run_is_found(digits: str) -> None:
    """A run longer than a card is checked window by window; the incremental sums find exactly
    the windows a check of each one finds."""
    expected = {
        (start, start + length)
        for start in range(len(digits))
        for length in range(13, 20)
        if start + length <= len(digits) and luhn_valid(digits[start : start + length])
    }
    assert set(_card_spans(digits)) == expected


def test_json_is_redacted_at_any_depth_keys_included() -> None:
    body: Any = {"a": [{"b": {"c": ["x", "key sk-ant-api03-" + "z" * 30]}}]}
    deep: Any = "AKIAIOSFODNN7EXAMPLE"
    for _ in range(5000):  # deeper than the recursion limit
        deep = [deep]
    body["deep"] = deep
    body["bob@example.com"] = 1
    out = red.json(body)
    assert "sk-ant" not in json.dumps(out["a"])
    assert "bob@example.com" not in json.dumps(list(out))
    node = out["deep"]
    while isinstance(node, list):
        node = node[0]
    assert node == MASK
    assert out["a"][0]["b"]["c"][0] == "x"


def test_headers_by_allow_list() -> None:
    out = red.headers(
        {
            "X-Api-Key": "sk-ant-api03-" + "q" * 30,
            "Authorization": "Bearer tok",
            "anthropic-version": "2023-06-01",
            "User-Agent": "claude-cli/2.1 (bob@example.com)",
            "x-custom": "harmless",
        }
    )
    assert out["x-api-key"] == MASK and out["authorization"] == MASK and out["x-custom"] == MASK
    assert out["anthropic-version"] == "2023-06-01"
    assert out["user-agent"] == f"claude-cli/2.1 ({MASK})"


def test_installation_patterns_are_applied() -> None:
    custom = Redactor([r"ACME-\d{6}"])
    assert custom.text("id ACME-123456 ok") == f"id {MASK} ok"


@settings(max_examples=200, deadline=None)
@given(planted_bodies())
def test_no_planted_secret_survives_json_redaction(planted: tuple[Any, list[str], Any]) -> None:
    body, planted_secrets, background = planted
    assume(not any(background_holds(background, secret) for secret in planted_secrets))
    out = json.dumps(red.json(body), ensure_ascii=False)
    for secret in planted_secrets:
        for piece in secret_pieces(secret):
            assert piece not in out


@settings(max_examples=200, deadline=None)
@given(secrets(), st.text(max_size=30), st.text(max_size=30), st.sampled_from(" \n\t\"',;:=()<>"))
def test_no_secret_survives_text_redaction(secret: str, before: str, after: str, sep: str) -> None:
    assume(not any(piece in before + sep + after for piece in secret_pieces(secret)))
    out = red.text(before + sep + secret + sep + after)
    for piece in secret_pieces(secret):
        assert piece not in out


@settings(max_examples=300, deadline=None)
@given(planted_bodies(), st.booleans())
def test_a_json_text_with_a_planted_secret_is_never_called_clean(
    planted: tuple[Any, list[str], Any], ascii_only: bool
) -> None:
    body, _, _ = planted
    # Both ways clients encode: with every non-ASCII character escaped, and without.
    text = json.dumps(body, ensure_ascii=ascii_only)
    assert not red.json_text_clean(text)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.none()),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=20,
    ),
    st.booleans(),
)
def test_a_json_text_called_clean_is_left_unchanged_by_the_walk(
    value: Any, ascii_only: bool
) -> None:
    text = json.dumps({"payload": value}, ensure_ascii=ascii_only)
    if red.json_text_clean(text):
        assert red.json(json.loads(text)) == json.loads(text)


# Strings of digit groups: card numbers (valid or not) among other digits.
_DIGITS_AND_SEPARATORS = st.text(alphabet="0123456789  -x", max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.lists(_DIGITS_AND_SEPARATORS, max_size=4), st.sampled_from(["4111111111111111", ""]))
def test_digit_runs_make_a_text_unclean_exactly_when_they_hold_a_card(
    strings: list[str], card: str
) -> None:
    value = {"id": "msg_fake0000000000000002", "parts": [*strings, f"pay {card}"]}
    text = json.dumps(value)
    changed = red.json(value) != value
    assert red.json_text_clean(text) == (not changed)
    if card:
        assert changed


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "Authorization: Bearer\\tabcdefghijkl"}',  # escaped whitespace after bearer
        '{"a": "sk\\u002dant-api03-AbCdEf0123456789_-xyz"}',  # a \\u escape spells it
        '{"bob@example.com": 1}',  # in a key
        '{"n": 4111111111111111}',  # a number: walked, kept (only strings are redacted)
    ],
)
def test_json_texts_that_must_be_walked(text: str) -> None:
    assert not red.json_text_clean(text)
    assert Redactor().json_text_clean('{"role": "user", "content": "line\\nnext \\"q\\""}')
    # Installation patterns may anchor or look around: never decided on the text.
    assert not Redactor([r"ACME-\d{6}"]).json_text_clean('{"role": "user"}')


def test_a_bad_installation_pattern_is_a_start_up_error(settings: Any) -> None:
    from requestlog.checks import redact_patterns_compile

    settings.GATEWAY_LOG_REDACT_PATTERNS = [r"ACME-\d+", "(unclosed"]
    errors = redact_patterns_compile()
    assert [error.id for error in errors] == ["requestlog.E001"]
    assert "(unclosed" in errors[0].msg
    settings.GATEWAY_LOG_REDACT_PATTERNS = [r"ACME-\d+"]
    assert redact_patterns_compile() == []


def _one_by_one(redactor: Redactor, text: str) -> str:
    """What ``text`` gives with every pattern tried in turn (no pre-check)."""
    for pattern in redactor._patterns:
        text = pattern.sub(MASK, text)
    return text


@pytest.mark.parametrize(
    "patterns",
    [
        [r"(?i)acme-\d{6}", r"(?s)BEGIN.*END", r"(?x) zz \d+ "],  # global flags of their own
        [r"(ab)\1", r"(?P<x>q)(?P=x)"],  # back-references: no union, each pattern in turn
    ],
)
def test_the_pre_check_never_skips_a_match(patterns: list[str]) -> None:
    custom = Redactor(patterns)
    for text in ["id ACME-123456", "BEGIN\nsecret\nEND", "zz42", "abab", "qq", "nothing", ""]:
        assert custom.text(text) == _one_by_one(custom, text), text
    assert custom.text("id ACME-123456 zz7 abab qq") != "id ACME-123456 zz7 abab qq"


@settings(max_examples=300, deadline=None)
@given(st.one_of(secrets(), st.text(max_size=60)), st.text(max_size=30), st.text(max_size=30))
def test_redacting_with_the_pre_check_equals_trying_every_pattern(
    secret: str, before: str, after: str
) -> None:
    text = before + secret + after
    assert red.text(text) == _mask_cards(_one_by_one(red, text))


def test_only_strings_left_unchanged_are_remembered_as_clean() -> None:
    red = Redactor()
    key = "sk-ant-" + "a" * 24
    for value in ("user", key, "4111 1111 1111 1111", "user", "x" * 65):
        red.text(value)
    assert red._clean == {"user"}
    assert red.text(key) == MASK
    assert red.json({"user": key, key: "user"}) == {"user": MASK, MASK: "user"}
