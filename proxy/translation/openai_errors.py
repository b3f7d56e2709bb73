"""Error bodies between OpenAI's format and Anthropic's, both directions.

OpenAI's body is ``{"error": {"message", "type", "param", "code"}}``. Its ``type`` and ``code``
values are not a published enum; the ones used here are those OpenAI's API sends for the same
situations (openai-python picks its exception class from the HTTP status alone, so the status
matters most, and the code is what programs test for):

=========================== ====== ===================== ===========================
Anthropic type (status)     status OpenAI type           OpenAI code
=========================== ====== ===================== ===========================
invalid_request_error (400) 400    invalid_request_error null, or context_length_exceeded
                                                         for "prompt is too long ..."
authentication_error (401)  401    invalid_request_error invalid_api_key
permission_error (403)      403    permission_error      null
not_found_error (404)       404    invalid_request_error model_not_found
request_too_large (413)     413    invalid_request_error request_too_large
rate_limit_error (429)      429    requests              rate_limit_exceeded
api_error (500)             500    server_error          null
timeout_error (504)         504    server_error          timeout
overloaded_error (529)      503    server_error          overloaded
=========================== ====== ===================== ===========================

529 is not an HTTP status OpenAI clients know; 503 is what OpenAI sends when it is overloaded,
and openai-python retries it. In the other direction (``openai_error_to_anthropic``, for an
OpenAI-compatible upstream behind an Anthropic client) the code wins over the status:
``insufficient_quota`` and ``rate_limit_exceeded`` are 429 ``rate_limit_error`` with the
upstream's message, ``context_length_exceeded`` is 400 worded "prompt is too long: ..." (Claude
Code compacts the conversation on that wording), 503 and overload wording become 529
``overloaded_error``. A 401/403 from the upstream is the gateway's own provider key failing, not
the client's: it becomes 403 ``permission_error``, never 401 (a 401 makes Claude Code drop its
login), as for Bedrock in ``errors``. Pure: no Django, no I/O.
"""

from __future__ import annotations

from proxy.translation import errors
from proxy.translation.hub import JSON

__all__ = [
    "anthropic_error_to_openai",
    "openai_error_body",
    "openai_error_to_anthropic",
    "openai_status_for_anthropic",
]

# Anthropic error type → (OpenAI status, type, code).
_TO_OPENAI: dict[str, tuple[int, str, str | None]] = {
    errors.INVALID_REQUEST_ERROR: (400, "invalid_request_error", None),
    errors.AUTHENTICATION_ERROR: (401, "invalid_request_error", "invalid_api_key"),
    errors.PERMISSION_ERROR: (403, "permission_error", None),
    errors.NOT_FOUND_ERROR: (404, "invalid_request_error", "model_not_found"),
    errors.REQUEST_TOO_LARGE: (413, "invalid_request_error", "request_too_large"),
    errors.RATE_LIMIT_ERROR: (429, "requests", "rate_limit_exceeded"),
    errors.API_ERROR: (500, "server_error", None),
    errors.TIMEOUT_ERROR: (504, "server_error", "timeout"),
    errors.OVERLOADED_ERROR: (503, "server_error", "overloaded"),
}
_DEFAULT_MESSAGE = "The upstream provider returned an error without a message."

# OpenAI codes (or types) that decide the Anthropic error whatever the status says.
_CODES_TO_ANTHROPIC: dict[str, tuple[int, str]] = {
    "insufficient_quota": (429, errors.RATE_LIMIT_ERROR),
    "rate_limit_exceeded": (429, errors.RATE_LIMIT_ERROR),
    "model_not_found": (404, errors.NOT_FOUND_ERROR),
    "invalid_api_key": (403, errors.PERMISSION_ERROR),
    "context_length_exceeded": (400, errors.INVALID_REQUEST_ERROR),
    "engine_overloaded": (529, errors.OVERLOADED_ERROR),
    "overloaded": (529, errors.OVERLOADED_ERROR),
    "timeout": (504, errors.TIMEOUT_ERROR),
}
# On top of every upstream's statuses (``errors.UPSTREAM_STATUS_ERRORS``): compatible servers in
# front of Anthropic models pass its 529 overload through.
_STATUS_TO_ANTHROPIC: dict[int, tuple[int, str]] = {
    **errors.UPSTREAM_STATUS_ERRORS,
    529: (529, errors.OVERLOADED_ERROR),
}


def openai_error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> JSON:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _anthropic_error(body: JSON | None) -> tuple[str | None, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    kind, message = error.get("type"), error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else "")


def openai_status_for_anthropic(status: int, body: JSON | None = None) -> int:
    """The HTTP status to answer an OpenAI client with for an Anthropic error (529 → 503)."""
    kind = _anthropic_error(body)[0] or errors.error_type_for_status(status)
    known = _TO_OPENAI.get(kind)
    if known is not None:
        return known[0]
    return 503 if status == 529 else status


def anthropic_error_to_openai(status: int, body: JSON | None) -> JSON:
    """OpenAI's error body for an Anthropic error (status and body as Anthropic sent them).

    The Anthropic ``error.type`` decides (see the table above); without one, the status does.
    The message is kept; an empty one gets a short default.
    """
    kind, message = _anthropic_error(body)
    kind = kind or errors.error_type_for_status(status)
    fallback_type = "invalid_request_error" if 400 <= status < 500 else "server_error"
    _status, openai_type, code = _TO_OPENAI.get(kind, (status, fallback_type, None))
    if kind == errors.INVALID_REQUEST_ERROR and message.lower().startswith(errors.PROMPT_TOO_LONG):
        code = "context_length_exceeded"
    return openai_error_body(message.strip() or _DEFAULT_MESSAGE, type=openai_type, code=code)


def _openai_error(body: JSON | None) -> tuple[str, str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):  # some compatible servers send {"error": "<message>"}
        return error, "", ""
    if not isinstance(error, dict):
        # vLLM and others sometimes send {"message": ..., "type": ..., "code": ...} unwrapped.
        error = body if isinstance(body, dict) else {}
    message = error.get("message")
    kind, code = error.get("type"), error.get("code")
    return (
        message if isinstance(message, str) else "",
        kind if isinstance(kind, str) else "",
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else "",
    )


def openai_error_to_anthropic(status: int, body: JSON | None) -> tuple[int, JSON]:
    """(status, Anthropic error body) for an error from an OpenAI-compatible upstream."""
    message, kind, code = _openai_error(body)
    mapped = _CODES_TO_ANTHROPIC.get(code) or _CODES_TO_ANTHROPIC.get(kind)
    if mapped is None and "overloaded" in message.lower() and status >= 500:
        mapped = (529, errors.OVERLOADED_ERROR)
    if mapped is None:
        mapped = _STATUS_TO_ANTHROPIC.get(status) or errors.upstream_status_error(status)
    anthropic_status, anthropic_type = mapped
    text = message.strip()
    if code == "context_length_exceeded" or kind == "context_length_exceeded":
        text = f"{errors.PROMPT_TOO_LONG}: {text}" if text else errors.PROMPT_TOO_LONG
    if not text:
        text = _DEFAULT_MESSAGE
    return anthropic_status, errors.error_body(anthropic_type, text)
