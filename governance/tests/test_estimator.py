"""The local token estimator against real counts (governance.estimator.corpus): the error the
README states must hold, long texts cost a bounded scan, and every block kind counts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.estimator.report import error_stats, load_corpus
from proxy.translation import estimate
from proxy.translation.estimate import (
    SLICE,
    estimate_input_tokens,
    estimate_text_tokens,
    estimate_texts_tokens,
)


def test_the_error_against_the_claude_tokenizer_is_what_the_readme_states() -> None:
    stats = error_stats(load_corpus(), "claude")
    assert stats.samples == 54
    assert 0.0 < stats.mean < 0.15  # errs high, by about a tenth
    assert stats.mean_abs < 0.12
    assert stats.p90_abs < 0.20
    assert stats.worst_under > -0.10


@pytest.mark.parametrize("kind", ["prose_en", "code_python", "tool_json"])
def test_no_kind_of_text_is_far_off(kind: str) -> None:
    samples = [s for s in load_corpus() if s["kind"] == kind]
    stats = error_stats(samples, "claude")
    assert -0.05 < stats.total < 0.25, stats


def test_prose_is_not_under_counted_for_openai_either() -> None:
    samples = [s for s in load_corpus() if s["kind"].startswith("prose_")]
    assert error_stats(samples, "o200k").worst_under > -0.05


def test_long_texts_are_sampled_with_little_error(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = load_corpus()
    text = "\n".join(s["text"] for s in corpus if s["kind"] in ("prose_en", "code_python"))
    assert len(text) > 10 * SLICE
    real = sum(s["claude"] for s in corpus if s["kind"] in ("prose_en", "code_python"))
    assert 0.9 < estimate_text_tokens(text) / real < 1.3
    scanned: list[int] = []
    features = estimate._features

    def recording(sample: str) -> float:
        scanned.append(len(sample))
        return features(sample)

    monkeypatch.setattr(estimate, "_features", recording)
    estimate_texts_tokens([text] * 50)
    assert scanned == [3 * SLICE + 2]


def test_slices_cross_text_boundaries() -> None:
    texts = ["a" * 1500, "b" * 1500, "c" * 5000]
    assert estimate._slice(texts, 1000, 1000) == "a" * 500 + "b" * 500
    assert estimate._slice(texts, 7950, 100) == "c" * 50
    assert estimate._slice(texts, 8000, 100) == ""
    assert estimate_texts_tokens([]) == 0
    assert estimate_texts_tokens(["", ""]) == 0


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, **fields}


def test_every_block_kind_counts() -> None:
    base = estimate_input_tokens(_request(messages=[{"role": "user", "content": "hello"}]))
    image = {"type": "image", "source": {"type": "base64", "data": "A" * 100_000}}
    with_image = estimate_input_tokens(
        _request(messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}, image]}])
    )
    assert with_image == base + 1_000  # the allowance, not the base64 length
    tool_use = {"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "/etc/hosts"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "text", "text": "x" * 400}],
    }
    thinking = {"type": "thinking", "thinking": "let me think " * 20, "signature": "s"}
    conversation = estimate_input_tokens(
        _request(
            system=[{"type": "text", "text": "You are helpful."}],
            messages=[
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [thinking, tool_use]},
                {
                    "role": "user",
                    "content": [result, {"type": "redacted_thinking", "data": "z" * 999}],
                },
            ],
            tools=[{"name": "Read", "input_schema": {"type": "object"}}],
        )
    )
    assert conversation > base + 12 + 3 * 4
    assert estimate_input_tokens(_request(messages=[])) == 1
    assert estimate_input_tokens(_request(messages=["junk", {"content": 5}])) >= 4


def _features_by_patterns(text: str) -> float:
    """The features as the patterns define them (what ``_features`` must count)."""
    tokens = sum(
        len(pattern.findall(text)) * weight for pattern, weight in estimate._ASCII_FEATURES
    )
    if not text.isascii():
        in_scripts = 0
        for pattern, weight in estimate._SCRIPT_FEATURES:
            count = len(pattern.findall(text))
            in_scripts += count
            tokens += count * weight
        tokens += (len(re.findall(r"[^\x00-\x7f]", text)) - in_scripts) * estimate._OTHER_NON_ASCII
    return tokens


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            list("abcXYZlongwordsss0189 \t\n!{~`@[/:_-é中٣３Ωж") + ["\ud800", "\x00", "\x7f"]
        ),
        max_size=80,
    )
)
def test_the_byte_counting_matches_the_patterns(text: str) -> None:
    assert estimate._features(text) == pytest.approx(_features_by_patterns(text), abs=1e-9)


def test_the_corpus_features_match_the_patterns() -> None:
    for sample in load_corpus():
        assert estimate._features(sample["text"]) == pytest.approx(
            _features_by_patterns(sample["text"]), abs=1e-9
        )


def test_tool_json_counts_characters_and_survives_what_orjson_refuses() -> None:
    plain = {"name": "Read", "input_schema": {"type": "object", "path": "/tmp/é"}}
    odd = {"name": "Read", "input_schema": {"n": 2**70, "s": "\ud800"}}
    assert (
        estimate._json_text(plain)
        == '{"name":"Read","input_schema":{"type":"object","path":"/tmp/é"}}'
    )
    assert '"n":1180591620717411303424' in estimate._json_text(odd)
    assert estimate_input_tokens(_request(messages=[], tools=[odd])) > 12
