"""Bedrock InvokeModel with Anthropic's own Messages body: request, response and stream.

InvokeModel runs Claude's Messages API behind Bedrock, so content blocks, thinking, tool use and
prompt caching pass through as they are. What differs, and is handled here:

- The body carries ``anthropic_version: "bedrock-2023-05-31"`` and no ``model`` or ``stream``
  (both are in the URL). Beta flags go in the body as ``anthropic_beta``.
- Bedrock rejects any top-level field it does not know ("Extra inputs are not permitted"), so
  only ``INVOKE_TOP_LEVEL_FIELDS`` are sent. Dropped on purpose: ``metadata`` (not in Bedrock's
  schema; coder/aibridge saw it rejected), ``service_tier``, ``container``, ``inference_geo``,
  ``mcp_servers``, a top-level ``cache_control`` and whatever Anthropic adds next.
- ``role: "system"`` messages (Claude Code sends them between turns) are rejected: their text is
  appended to ``system`` and the neighbouring turns of the same role are merged.
- Features depend on the Bedrock model. When the caller names it (``model_id``), requests are
  adjusted to what that Claude generation accepts; an unrecognised ID (an application
  inference-profile ARN) is treated as current and left as the client sent it:

  * ``thinking``: ``adaptive`` exists from 4.6 on; older models get ``enabled`` with a budget
    derived from ``max_tokens`` and ``output_config.effort`` (plus interleaved thinking, which
    adaptive implies). 4.7 and later accept only ``adaptive``. ``disabled`` is dropped (it is
    the default, and the adaptive-only models reject it). Models before 3.7 get no thinking.
  * ``output_config``: ``format`` (structured outputs) from 4.5, ``effort`` from 4.6 (Opus 4.5:
    with the ``effort-2025-11-24`` beta); other keys are dropped.
  * ``cache_control``: ``ttl`` from 4.5; ``scope`` never (no Bedrock equivalent).
  * tools: ``strict`` from 4.5; tool search (``tool_search_tool_*`` tools, ``defer_loading``)
    and ``input_examples`` from 4.5, with their Bedrock betas added; otherwise the search tools
    are removed and the custom tools load normally. Anthropic-hosted tools (web search/fetch,
    code execution, MCP toolsets) are removed. Unknown keys are stripped from custom tools
    (Claude Code sends ones Bedrock rejects).
  * ``context_management``: only ``clear_tool_uses_20250919`` and ``compact_20260112`` edits
    exist on Bedrock (with their betas); other edits are dropped, and the field with them.

The stream answer is eventstream frames whose ``chunk`` payload holds one base64 Anthropic event;
``InvokeStreamTranslator`` turns those payloads back into Anthropic events and keeps the usage.
Pure functions: no Django, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from proxy import jsonio
from proxy.translation.betas import BEDROCK_SUPPORTED_BETAS
from proxy.translation.model_ids import claude_version
from proxy.translation.sse import (
    USAGE_FIELDS,
    Usage,
    as_token_count,
    merge_delta_usage,
    normalize_usage,
)

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"

# Top-level fields of Bedrock's InvokeModel body for Claude (AWS user guide, "Request and
# Response", plus the thinking, structured-output and compaction pages). Nothing else is sent.
INVOKE_TOP_LEVEL_FIELDS: frozenset[str] = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "context_management",
    }
)

# Fields copied unchanged when present.
_PLAIN_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences")

# Keys a custom (client-side) tool may carry on Bedrock; the gated ones are decided per request.
_CUSTOM_TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
# Anthropic-hosted tools Bedrock does not run.
_UNSUPPORTED_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_", "mcp_toolset")
_TOOL_SEARCH_PREFIX = "tool_search_tool_"

_TOOL_SEARCH_BETA = "tool-search-tool-2025-10-19"
_TOOL_EXAMPLES_BETA = "tool-examples-2025-10-29"
_INTERLEAVED_THINKING_BETA = "interleaved-thinking-2025-05-14"
_EFFORT_BETA = "effort-2025-11-24"

# context_management edits Bedrock runs, and the beta each needs.
_CONTEXT_EDIT_BETAS: dict[str, str] = {
    "clear_tool_uses_20250919": "context-management-2025-06-27",
    "compact_20260112": "compact-2026-01-12",
}

# Share of max_tokens given to thinking when adaptive thinking becomes a fixed budget.
_EFFORT_BUDGET_SHARE: dict[str, float] = {"low": 0.25, "medium": 0.5, "high": 0.75, "max": 0.9}
_DEFAULT_BUDGET_SHARE = _EFFORT_BUDGET_SHARE["high"]
_MIN_THINKING_BUDGET = 1024

_ADAPTIVE_THINKING_FROM = (4, 6)
_ADAPTIVE_ONLY_FROM = (4, 7)
_EXTENDED_THINKING_FROM = (3, 7)
_INTERLEAVED_THINKING_FROM = (4, 0)
_CLAUDE_4_5 = (4, 5)

_BEDROCK_KEY_PREFIX = "amazon-bedrock-"
_INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"
# invocationMetrics names → Anthropic usage names (used only when the events carry no usage).
_METRICS_FIELDS: dict[str, str] = {
    "inputTokenCount": "input_tokens",
    "outputTokenCount": "output_tokens",
    "cacheReadInputTokenCount": "cache_read_input_tokens",
    "cacheWriteInputTokenCount": "cache_creation_input_tokens",
}


class InvokeStreamError(ValueError):
    """A Bedrock stream payload that is not a base64-encoded Anthropic event."""


# ---------------------------------------------------------------------------------------------
# Request


def anthropic_to_invoke(
    body: Mapping[str, Any], *, betas: list[str], model_id: str | None = None
) -> dict[str, Any]:
    """Return the InvokeModel body for an Anthropic Messages request ``body``.

    ``betas`` are the flags already filtered by ``bedrock_betas``; flags a kept feature needs
    are added. ``model_id`` is the Bedrock model ID or ARN the request goes to. ``body`` is not
    modified; unchanged parts are shared with it.
    """
    version = claude_version(model_id) if model_id else None
    keep_ttl = version is None or version >= _CLAUDE_4_5
    flags = list(dict.fromkeys(betas))

    out: dict[str, Any] = {"anthropic_version": BEDROCK_ANTHROPIC_VERSION}
    for name in _PLAIN_FIELDS:
        if name in body:
            out[name] = body[name]

    system, messages = _fold_system_messages(body.get("system"), body.get("messages"))
    if system is not None:
        out["system"] = _clean_blocks(system, keep_ttl) if isinstance(system, list) else system
    out["messages"] = [_clean_message(message, keep_ttl) for message in messages]

    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, Mapping) else None

    thinking, thinking_flags = _thinking_for_bedrock(
        body.get("thinking"), max_tokens=body.get("max_tokens"), effort=effort, version=version
    )
    if thinking is not None:
        out["thinking"] = thinking
    flags.extend(thinking_flags)

    kept_output_config = _output_config_for_bedrock(
        output_config,
        version=version,
        effort_beta=_EFFORT_BETA in flags and "opus" in (model_id or "").lower(),
    )
    if kept_output_config:
        out["output_config"] = kept_output_config

    tools, tool_flags = _tools_for_bedrock(body.get("tools"), version=version, keep_ttl=keep_ttl)
    if tools:
        out["tools"] = tools
        tool_choice = _tool_choice_for_bedrock(body.get("tool_choice"), tools)
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    flags.extend(tool_flags)

    context_management, context_flags = _context_management_for_bedrock(
        body.get("context_management")
    )
    if context_management is not None:
        out["context_management"] = context_management
    flags.extend(context_flags)

    kept_flags = [flag for flag in dict.fromkeys(flags) if flag in BEDROCK_SUPPORTED_BETAS]
    if kept_flags:
        out["anthropic_beta"] = kept_flags
    return {name: value for name, value in out.items() if name in INVOKE_TOP_LEVEL_FIELDS}


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [
            block for block in content if isinstance(block, dict) and block.get("type") == "text"
        ]
    return []


def _as_block_list(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return list(content)
    return []


def _fold_system_messages(system: Any, messages: Any) -> tuple[Any, list[Any]]:
    """Move ``role: "system"`` messages into ``system`` and merge the turns they separated."""
    if not isinstance(messages, list):
        return system, []
    folded: list[dict[str, Any]] = []
    conversation: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            folded.extend(_text_blocks(message.get("content")))
            continue
        previous = conversation[-1] if conversation else None
        if (
            isinstance(message, dict)
            and isinstance(previous, dict)
            and previous.get("role") == message.get("role")
        ):
            # Anthropic merges consecutive turns of one role itself; Bedrock wants them merged.
            merged = dict(previous)
            merged["content"] = _as_block_list(previous.get("content")) + _as_block_list(
                message.get("content")
            )
            conversation[-1] = merged
        else:
            conversation.append(message)
    if folded:
        system = _text_blocks(system) + folded
    return system, conversation


def _clean_cache_control(block: dict[str, Any], keep_ttl: bool) -> dict[str, Any]:
    cache_control = block.get("cache_control")
    if not isinstance(cache_control, dict):
        return block
    if "scope" not in cache_control and (keep_ttl or "ttl" not in cache_control):
        return block
    cleaned = {key: value for key, value in cache_control.items() if key != "scope"}
    if not keep_ttl:
        cleaned.pop("ttl", None)
    return {**block, "cache_control": cleaned}


def _clean_blocks(blocks: list[Any], keep_ttl: bool) -> list[Any]:
    cleaned: list[Any] = []
    for block in blocks:
        if isinstance(block, dict):
            block = _clean_cache_control(block, keep_ttl)
            inner = block.get("content")
            if block.get("type") == "tool_result" and isinstance(inner, list):
                block = {**block, "content": _clean_blocks(inner, keep_ttl)}
        cleaned.append(block)
    return cleaned


def _clean_message(message: Any, keep_ttl: bool) -> Any:
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        return {**message, "content": _clean_blocks(message["content"], keep_ttl)}
    return message


def _thinking_budget(max_tokens: Any, effort: Any) -> int | None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return None
    share = _DEFAULT_BUDGET_SHARE
    if isinstance(effort, str):
        share = _EFFORT_BUDGET_SHARE.get(effort, _DEFAULT_BUDGET_SHARE)
    budget = int(max_tokens * share)
    # Below the minimum budget, no thinking beats an answer squeezed out by thinking.
    return budget if budget >= _MIN_THINKING_BUDGET else None


def _thinking_for_bedrock(
    thinking: Any, *, max_tokens: Any, effort: Any, version: tuple[int, int] | None
) -> tuple[dict[str, Any] | None, list[str]]:
    if not isinstance(thinking, dict):
        return None, []
    kind = thinking.get("type")
    if kind == "disabled":
        return None, []
    if version is not None and version < _EXTENDED_THINKING_FROM:
        return None, []
    if kind == "adaptive":
        if version is None or version >= _ADAPTIVE_THINKING_FROM:
            return thinking, []
        budget = _thinking_budget(max_tokens, effort)
        if budget is None:
            return None, []
        flags = [_INTERLEAVED_THINKING_BETA] if version >= _INTERLEAVED_THINKING_FROM else []
        return {"type": "enabled", "budget_tokens": budget}, flags
    if kind == "enabled" and version is not None and version >= _ADAPTIVE_ONLY_FROM:
        return {"type": "adaptive"}, []
    return thinking, []


def _output_config_for_bedrock(
    output_config: Any, *, version: tuple[int, int] | None, effort_beta: bool
) -> dict[str, Any]:
    if not isinstance(output_config, Mapping):
        return {}
    kept: dict[str, Any] = {}
    # Effort is native from 4.6; Opus 4.5 has it behind a beta, other 4.5 models not at all.
    if "effort" in output_config and (
        version is None
        or version >= _ADAPTIVE_THINKING_FROM
        or (version == _CLAUDE_4_5 and effort_beta)
    ):
        kept["effort"] = output_config["effort"]
    if "format" in output_config and (version is None or version >= _CLAUDE_4_5):
        kept["format"] = output_config["format"]
    return kept


def _tools_for_bedrock(
    tools: Any, *, version: tuple[int, int] | None, keep_ttl: bool
) -> tuple[list[Any], list[str]]:
    if not isinstance(tools, list):
        return [], []
    from_4_5 = version is None or version >= _CLAUDE_4_5
    typed = [tool for tool in tools if isinstance(tool, dict)]
    tool_search = from_4_5 and any(
        str(tool.get("type", "")).startswith(_TOOL_SEARCH_PREFIX) for tool in typed
    )
    custom_keys = set(_CUSTOM_TOOL_KEYS)
    if tool_search:
        custom_keys.add("defer_loading")
    if from_4_5:
        custom_keys.update({"strict", "input_examples"})

    kept: list[Any] = []
    uses_examples = False
    for tool in typed:
        tool_type = str(tool.get("type") or "custom")
        if tool_type.startswith(_UNSUPPORTED_TOOL_PREFIXES):
            continue
        if tool_type.startswith(_TOOL_SEARCH_PREFIX):
            if tool_search:
                kept.append(_clean_cache_control(tool, keep_ttl))
            continue
        if tool_type == "custom":
            tool = {key: value for key, value in tool.items() if key in custom_keys}
            uses_examples = uses_examples or "input_examples" in tool
        kept.append(_clean_cache_control(tool, keep_ttl))

    flags: list[str] = []
    if tool_search:
        flags.append(_TOOL_SEARCH_BETA)
    if uses_examples:
        flags.append(_TOOL_EXAMPLES_BETA)
    return kept, flags


def _tool_choice_for_bedrock(tool_choice: Any, tools: list[Any]) -> Any:
    # A choice naming a tool that was removed would be rejected; let the model choose instead.
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "tool":
        # A list (not a set): names are client JSON and may be unhashable lists or objects.
        names = [tool.get("name") for tool in tools if isinstance(tool, dict)]
        if tool_choice.get("name") not in names:
            return None
    return tool_choice


def _context_management_for_bedrock(
    context_management: Any,
) -> tuple[dict[str, Any] | None, list[str]]:
    if not isinstance(context_management, Mapping):
        return None, []
    edits = context_management.get("edits")
    if not isinstance(edits, list):
        return None, []
    kept = [
        edit
        for edit in edits
        if isinstance(edit, dict)
        and isinstance(edit.get("type"), str)
        and edit.get("type") in _CONTEXT_EDIT_BETAS
    ]
    if not kept:
        return None, []
    flags = [_CONTEXT_EDIT_BETAS[edit["type"]] for edit in kept]
    return {"edits": kept}, flags


# ---------------------------------------------------------------------------------------------
# Non-streamed response


def invoke_response_to_anthropic(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """Return the Anthropic Messages response for an InvokeModel answer ``body``.

    The client's requested ``model`` name is echoed, Bedrock-only keys are dropped and usage
    always carries the four counts (missing cache counts hid Claude Code's cache statistics).
    """
    out = {key: value for key, value in body.items() if not key.startswith(_BEDROCK_KEY_PREFIX)}
    out["model"] = model
    out.setdefault("id", f"msg_bdrk_{uuid.uuid4().hex}")
    out.setdefault("type", "message")
    out.setdefault("role", "assistant")
    out.setdefault("content", [])
    out.setdefault("stop_reason", None)
    out.setdefault("stop_sequence", None)
    raw_usage = body.get("usage")
    usage = dict(raw_usage) if isinstance(raw_usage, Mapping) else {}
    usage.update(normalize_usage(usage).as_dict())
    out["usage"] = usage
    return out


# ---------------------------------------------------------------------------------------------
# Streamed response


class InvokeStreamTranslator:
    """Turns InvokeModelWithResponseStream ``chunk`` payloads into Anthropic stream events.

    ``feed`` takes the decoded JSON payload of one ``chunk`` frame (``{"bytes": "<base64>"}``)
    and returns ``[(event_name, data)]`` ready for ``encode_sse``. ``message_start`` gets the
    client's model name; ``amazon-bedrock-invocationMetrics`` is removed (its counts are used
    only for usage the events did not report). ``usage`` and ``stop_reason`` follow the stream.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._counts: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        self._reported: set[str] = set()
        self._metrics: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.message_id: str | None = None
        self.error: tuple[str, str] | None = None
        self.saw_message_stop = False

    @property
    def usage(self) -> Usage:
        counts = dict(self._counts)
        for name, value in self._metrics.items():
            if name not in self._reported:
                counts[name] = value
        return Usage(**counts)

    def feed(self, payload: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Return the Anthropic event(s) carried by one ``chunk`` payload."""
        event = _decode_chunk(payload)
        metrics = event.pop(_INVOCATION_METRICS, None)
        if isinstance(metrics, Mapping):
            self._read_metrics(metrics)
        event_type = event["type"]
        if event_type == "message_start":
            self._on_message_start(event)
        elif event_type == "message_delta":
            self._on_message_delta(event)
        elif event_type == "message_stop":
            self.saw_message_stop = True
        elif event_type == "error":
            error = event.get("error")
            if isinstance(error, Mapping):
                self.error = (str(error.get("type") or "api_error"), str(error.get("message", "")))
        return [(event_type, event)]

    def _on_message_start(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        if not isinstance(message, dict):
            return
        message["model"] = self._model
        if isinstance(message.get("id"), str):
            self.message_id = message["id"]
        usage = message.get("usage")
        if isinstance(usage, Mapping):
            self._counts = normalize_usage(usage).as_dict()
            self._reported.update(name for name in USAGE_FIELDS if usage.get(name) is not None)

    def _on_message_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
            self.stop_reason = str(delta["stop_reason"])
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            merge_delta_usage(self._counts, usage)
            self._reported.update(name for name in USAGE_FIELDS if usage.get(name) is not None)

    def _read_metrics(self, metrics: Mapping[str, Any]) -> None:
        for source, target in _METRICS_FIELDS.items():
            if metrics.get(source) is not None:
                self._metrics[target] = as_token_count(metrics[source])


def _decode_chunk(payload: Mapping[str, Any]) -> dict[str, Any]:
    encoded = payload.get("bytes") if isinstance(payload, Mapping) else None
    if not isinstance(encoded, str):
        raise InvokeStreamError("chunk payload has no base64 'bytes'")
    try:
        event = jsonio.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise InvokeStreamError(f"chunk payload is not a base64 JSON event: {exc}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvokeStreamError("chunk payload is not an Anthropic stream event")
    return event
