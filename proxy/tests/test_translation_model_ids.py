"""Model identifiers: model-map keys, geo prefixes, URL encoding, Claude generations."""

from __future__ import annotations

import pytest
from botocore.utils import percent_encode

from proxy.translation.model_ids import (
    claude_version,
    normalize_requested_model,
    quote_model_id,
    strip_geo_prefix,
)


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
        ("  claude-opus-4-6\n", "claude-opus-4-6"),
        ("claude-opus-4-7[1m]", "claude-opus-4-7"),
        ("claude-opus-4-7[1M]", "claude-opus-4-7"),
        ("claude-opus-4-7[1M][1m]", "claude-opus-4-7"),
        ("claude-opus-4-7 [1m] ", "claude-opus-4-7"),
        ("sonnet[1m]", "sonnet"),
        # Only a trailing suffix is the context switch; anything else is part of the name.
        ("claude[1m]-custom", "claude[1m]-custom"),
        ("claude-opus-4-7[2m]", "claude-opus-4-7[2m]"),
        # Case is kept: model names are case-sensitive upstream.
        ("Claude-Sonnet-4-5", "Claude-Sonnet-4-5"),
        ("", ""),
    ],
)
def test_normalize_requested_model(sent: str, key: str) -> None:
    assert normalize_requested_model(sent) == key


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),
        ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("au.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("in.anthropic.claude-opus-4-6-v1", "anthropic.claude-opus-4-6-v1"),
        (
            "us-gov.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        ("global.anthropic.claude-opus-4-6-v1", "anthropic.claude-opus-4-6-v1"),
        ("anthropic.claude-opus-4-6-v1", "anthropic.claude-opus-4-6-v1"),
        (" us.anthropic.claude-sonnet-4-6 ", "anthropic.claude-sonnet-4-6"),
        # A prefix must be a whole label: "usa." is not "us.".
        ("usa.anthropic.claude-x", "usa.anthropic.claude-x"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
            "anthropic.claude-sonnet-4-6",
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile",
        ),
        ("arn:aws:bedrock", "arn:aws:bedrock"),
        # An application inference profile hides its model: nothing to strip.
        (
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
        ),
    ],
)
def test_strip_geo_prefix(model_id: str, base: str) -> None:
    assert strip_geo_prefix(model_id) == base


@pytest.mark.parametrize(
    ("model_id", "quoted"),
    [
        (
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "eu.anthropic.claude-3-7-sonnet-20250219-v1%3A0",
        ),
        ("anthropic.claude-opus-4-6-v1", "anthropic.claude-opus-4-6-v1"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3",
            "arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3",
        ),
        ("a b~c_d", "a%20b~c_d"),
    ],
)
def test_quote_model_id(model_id: str, quoted: str) -> None:
    assert quote_model_id(model_id) == quoted
    # The same encoding botocore applies to the {modelId} label of bedrock-runtime URLs.
    assert quote_model_id(model_id) == percent_encode(model_id)


@pytest.mark.parametrize(
    ("model_id", "version"),
    [
        ("claude-opus-4-6", (4, 6)),
        ("global.anthropic.claude-opus-4-6-v1", (4, 6)),
        ("anthropic.claude-sonnet-4-6", (4, 6)),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", (4, 5)),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", (4, 5)),
        ("anthropic.claude-opus-4-1-20250805-v1:0", (4, 1)),
        # A date right after the major version is not a minor version.
        ("anthropic.claude-sonnet-4-20250514-v1:0", (4, 0)),
        ("claude-opus-4-7", (4, 7)),
        ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", (3, 7)),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", (3, 5)),
        ("anthropic.claude-3-haiku-20240307-v1:0", (3, 0)),
        ("CLAUDE-SONNET-4-5", (4, 5)),
        ("anthropic.claude-mythos-5", (5, 0)),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-opus-4-6-v1", (4, 6)),
        ("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc", None),
        ("anthropic.claude-instant-v1", None),
        ("amazon.nova-pro-v1:0", None),
        ("", None),
    ],
)
def test_claude_version(model_id: str, version: tuple[int, int] | None) -> None:
    assert claude_version(model_id) == version
