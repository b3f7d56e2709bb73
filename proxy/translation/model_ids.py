"""Model identifiers: what clients ask for and what Bedrock wants in its URLs.

Pure string functions, no Django and no I/O:

- ``normalize_requested_model`` turns the ``model`` a client sent into the key for the model map.
- ``strip_geo_prefix`` turns an inference-profile ID into the base model ID (Bedrock CountTokens
  accepts only base IDs).
- ``quote_model_id`` encodes a model ID or ARN for the ``/model/{modelId}/...`` URL path.
- ``claude_version`` reads the Claude generation out of any model ID, so translators can tell
  which request features a Bedrock model accepts.

The model map itself (which Anthropic name goes to which Bedrock ID) lives in ``proxy.models``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Inference-profile prefixes AWS uses ({geo}.{base id}); "us-gov" must come before "us".
GEO_PREFIXES: tuple[str, ...] = (
    "us-gov.",
    "us.",
    "eu.",
    "apac.",
    "jp.",
    "au.",
    "in.",
    "global.",
)

# ARN resource types whose ID is a model or system inference-profile ID. An application
# inference profile's ARN ends in an opaque ID instead and is left alone.
_ARN_MODEL_RESOURCES = frozenset({"foundation-model", "inference-profile"})

# Claude Code treats a trailing "[1m]" as a client-side switch for the 1M-token context window
# and normally removes it before sending, but some requests (session resume, the auto-mode
# classifier) have leaked it verbatim, sometimes twice and in either case ("[1M][1m]").
# The suffix is never part of a real model name, so it is dropped before the model-map lookup.
_CONTEXT_SUFFIX = re.compile(r"(?:\s*\[1m\])+\s*$", re.IGNORECASE)

# "claude-opus-4-6", "claude-sonnet-4-20250514" (4.0), "claude-haiku-4-5-20251001" ...
_VERSION_NEW = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d)(?!\d))?")
# Older names put the version first: "claude-3-7-sonnet-20250219", "claude-3-haiku-20240307".
_VERSION_OLD = re.compile(r"claude-(\d+)(?:-(\d)(?!\d))?-(?:opus|sonnet|haiku)")
# Families named after the version ("claude-mythos-5") have no minor part we can rely on.
_VERSION_OTHER = re.compile(r"claude-[a-z]+-(\d+)(?:-(\d)(?!\d))?")


def normalize_requested_model(name: str) -> str:
    """Return the model-map key for the ``model`` a client sent.

    Surrounding whitespace and Claude Code's ``[1m]`` context suffix are removed; case is kept,
    because Anthropic model names are case-sensitive.
    """
    return _CONTEXT_SUFFIX.sub("", name.strip())


def strip_geo_prefix(model_id: str) -> str:
    """Return the base model ID of an inference-profile ID (``us.anthropic.x`` → ``anthropic.x``).

    Foundation-model and system inference-profile ARNs are reduced to their ID first. IDs with no
    known prefix, and application inference-profile ARNs, come back unchanged.
    """
    model_id = model_id.strip()
    if model_id.startswith("arn:"):
        # arn:partition:service:region:account:resource-type/resource-id
        resource = model_id.split(":", 5)[-1]
        resource_type, _, resource_id = resource.partition("/")
        if resource_type not in _ARN_MODEL_RESOURCES or not resource_id:
            return model_id
        model_id = resource_id
    for prefix in GEO_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix) :]
    return model_id


def quote_model_id(model_id: str) -> str:
    """Encode a model ID or ARN as one URL path segment, the way botocore does.

    botocore percent-encodes the ``{modelId}`` label with only ``-_.~`` left as is, so ``:``
    becomes ``%3A`` and an ARN's ``/`` becomes ``%2F`` (it must not split the path).
    """
    return quote(model_id, safe="-_.~")


def claude_version(model_id: str) -> tuple[int, int] | None:
    """Return the Claude (major, minor) generation named in a model ID, or None if it names none.

    Works on Anthropic names, Bedrock base IDs, inference-profile IDs and ARNs that embed one.
    ``claude-sonnet-4-20250514`` is (4, 0): a date is never taken for the minor version.
    """
    lowered = model_id.lower()
    for pattern in (_VERSION_NEW, _VERSION_OLD, _VERSION_OTHER):
        match = pattern.search(lowered)
        if match:
            return int(match.group(1)), int(match.group(2) or 0)
    return None
