"""Fitting a request to the fallback model's limits (pure functions).

Clients ask for the output budget of the model they name (Claude Code: up to 128000 tokens);
the Bedrock model that answers instead may allow less, and Bedrock rejects a larger
``max_tokens`` outright. The thinking budget must stay below ``max_tokens``.
"""

from __future__ import annotations

from typing import Any

MIN_THINKING_BUDGET = 1024


def clamp_output_tokens(body: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """``body`` with ``max_tokens`` lowered to ``limit`` (and an enabled thinking budget kept
    below it, or thinking dropped when no valid budget fits). Unchanged when within limits."""
    max_tokens = body.get("max_tokens")
    if limit is None or not isinstance(max_tokens, int) or max_tokens <= limit:
        return body
    clamped = {**body, "max_tokens": limit}
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= limit:
            if limit - 1 >= MIN_THINKING_BUDGET:
                clamped["thinking"] = {**thinking, "budget_tokens": limit - 1}
            else:
                del clamped["thinking"]
    return clamped
