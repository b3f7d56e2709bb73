"""The ``anthropic-beta`` flags the gateway may forward to Bedrock, and the filter applying them.

Bedrock takes beta flags in the InvokeModel body (``anthropic_beta``) or in Converse's
``additionalModelRequestFields``, and rejects the whole request with 400 "invalid beta flag" when
one of them is unknown to it. Claude Code sends a long list meant for Anthropic's own API
(``claude-code-20250219``, ``oauth-2025-04-20``, ``prompt-caching-scope-…`` …), so only the flags
below go through.

Sources for the list (checked 2026): the AWS Bedrock user guide, "Anthropic Claude Messages API →
Request and Response" and its tool-use, compaction and thinking pages; LiteLLM's
``anthropic_beta_headers_config.json`` (provider "bedrock") and
``llms/bedrock/beta_headers_config.py``; the Bedrock filter in coder/aibridge; and Claude Code's
own provider table (tool search is ``advanced-tool-use-2025-11-20`` on Anthropic but
``tool-search-tool-2025-10-19`` on Bedrock). Deliberately left out:
``extended-cache-ttl-2025-04-11`` (the only flag of a rejected request in
anthropics/claude-code#56595 that no source lists),
``thinking-binding-controls-2026-08-01`` (400 on models without it, BerriAI/litellm#41203), and
every Anthropic-only feature (files, MCP client, web search/fetch, code execution, skills, OAuth).

Acceptance also varies per model: Claude Opus 4.7 on Bedrock rejected most flags at launch
(anthropics/claude-code#49370). That is not modelled here; one list keeps the behaviour
predictable, and a model that rejects a listed flag fails with Bedrock's own 400.
"""

from __future__ import annotations

BEDROCK_SUPPORTED_BETAS: frozenset[str] = frozenset(
    {
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "token-efficient-tools-2025-02-19",
        "output-128k-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "dev-full-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14",
        "context-management-2025-06-27",
        "context-1m-2025-08-07",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
        "effort-2025-11-24",
        "compact-2026-01-12",
    }
)

# Anthropic names for features Bedrock enables under a different flag.
BEDROCK_BETA_ALIASES: dict[str, str] = {
    "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19",
}


def bedrock_betas(header_value: str | None) -> list[str]:
    """Return the flags of an ``anthropic-beta`` header value that Bedrock accepts.

    Several ``anthropic-beta`` headers should be joined with commas before the call.

    The value is split on commas and stripped; aliases are renamed; unknown flags are dropped.
    Order of first appearance is kept and duplicates are removed.
    """
    if not header_value:
        return []
    kept: list[str] = []
    for raw in header_value.split(","):
        flag = raw.strip()
        flag = BEDROCK_BETA_ALIASES.get(flag, flag)
        if flag in BEDROCK_SUPPORTED_BETAS and flag not in kept:
            kept.append(flag)
    return kept
