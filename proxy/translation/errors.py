"""Anthropic-shaped errors: the error body, status ↔ type, and Bedrock failures mapped onto them.

Every error the gateway returns, its own or an upstream's, has Anthropic's shape
``{"type": "error", "error": {"type": ..., "message": ...}}`` so clients (Claude Code reads the
type and the wording to decide on retries and recovery) need no special cases.
``is_retryable_anthropic_status`` is the one place that decides which Anthropic statuses send a
request on to the Bedrock fallback. Pure functions: no Django, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INVALID_REQUEST_ERROR = "invalid_request_error"
AUTHENTICATION_ERROR = "authentication_error"
PERMISSION_ERROR = "permission_error"
NOT_FOUND_ERROR = "not_found_error"
REQUEST_TOO_LARGE = "request_too_large"
RATE_LIMIT_ERROR = "rate_limit_error"
API_ERROR = "api_error"
TIMEOUT_ERROR = "timeout_error"
OVERLOADED_ERROR = "overloaded_error"

# Anthropic's documented status → error type table.
_TYPE_BY_STATUS: dict[int, str] = {
    400: INVALID_REQUEST_ERROR,
    401: AUTHENTICATION_ERROR,
    403: PERMISSION_ERROR,
    404: NOT_FOUND_ERROR,
    413: REQUEST_TOO_LARGE,
    429: RATE_LIMIT_ERROR,
    500: API_ERROR,
    504: TIMEOUT_ERROR,
    529: OVERLOADED_ERROR,
}

# Anthropic failures worth retrying on Bedrock: rate limits, overload and server-side errors.
RETRYABLE_ANTHROPIC_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504, 529})

# Bedrock sends no retry hint when it throttles; this is what clients are told to wait.
DEFAULT_THROTTLE_RETRY_AFTER_SECONDS = 5

# Bedrock exception name (lowercased, so the HTTP form "ThrottlingException" and the eventstream
# form "throttlingException" match alike) → (status, Anthropic error type).
_BEDROCK_EXCEPTIONS: dict[str, tuple[int, str]] = {
    "validationexception": (400, INVALID_REQUEST_ERROR),
    "accessdeniedexception": (403, PERMISSION_ERROR),
    # AWS rejects the gateway's own Bedrock credential with these. They become 403, never 401:
    # a 401 would make Claude Code discard the user's login, which is not what failed.
    "unrecognizedclientexception": (403, PERMISSION_ERROR),
    "expiredtokenexception": (403, PERMISSION_ERROR),
    "invalidsignatureexception": (403, PERMISSION_ERROR),
    "missingauthenticationtokenexception": (403, PERMISSION_ERROR),
    "resourcenotfoundexception": (404, NOT_FOUND_ERROR),
    "modeltimeoutexception": (504, TIMEOUT_ERROR),
    "modelerrorexception": (500, API_ERROR),
    "modelstreamerrorexception": (500, API_ERROR),
    "throttlingexception": (429, RATE_LIMIT_ERROR),
    # An account quota, not a malformed request: report it the way Anthropic reports limits.
    "servicequotaexceededexception": (429, RATE_LIMIT_ERROR),
    "modelnotreadyexception": (529, OVERLOADED_ERROR),
    "serviceunavailableexception": (529, OVERLOADED_ERROR),
    "internalserverexception": (500, API_ERROR),
}

# An upstream provider's HTTP status → (Anthropic status, type), for every upstream the gateway
# calls with its own credential (Bedrock, OpenAI-compatible servers, Gemini, Ollama). 401/403 are
# that credential failing, not the client's: they become 403, never 401 (a 401 makes Claude Code
# drop the user's login). 408 is the upstream timing out; 503 is its overload. Providers add their
# own statuses on top and decide what an unlisted status means.
UPSTREAM_STATUS_ERRORS: dict[int, tuple[int, str]] = {
    400: (400, INVALID_REQUEST_ERROR),
    401: (403, PERMISSION_ERROR),
    403: (403, PERMISSION_ERROR),
    404: (404, NOT_FOUND_ERROR),
    408: (504, TIMEOUT_ERROR),
    413: (413, REQUEST_TOO_LARGE),
    429: (429, RATE_LIMIT_ERROR),
    503: (529, OVERLOADED_ERROR),
    504: (504, TIMEOUT_ERROR),
}

# When Bedrock names no known exception, its HTTP status decides; 424 is a model failure.
_BEDROCK_STATUS_FALLBACK: dict[int, tuple[int, str]] = {
    **UPSTREAM_STATUS_ERRORS,
    424: (500, API_ERROR),
}

# Bedrock wraps the model's own complaint in this prefix; Anthropic's wording is what clients
# recognise (Claude Code compacts the conversation on "prompt is too long").
_MODEL_ERRORS_PREFIX = "The model returned the following errors: "
_BEDROCK_TOO_LONG = "input is too long for requested model"
# How Anthropic words a context overflow; Claude Code compacts the conversation when an error's
# message starts with it, so every upstream's overflow error is reworded to start with it.
PROMPT_TOO_LONG = "prompt is too long"

_DEFAULT_MESSAGES: dict[str, str] = {
    INVALID_REQUEST_ERROR: "The request was rejected by the upstream provider.",
    PERMISSION_ERROR: "The gateway's upstream credential is not allowed to use this model.",
    NOT_FOUND_ERROR: "The requested model was not found upstream.",
    REQUEST_TOO_LARGE: "The request is too large.",
    RATE_LIMIT_ERROR: "The upstream provider is rate limiting requests.",
    API_ERROR: "The upstream provider failed.",
    TIMEOUT_ERROR: "The upstream provider timed out.",
    OVERLOADED_ERROR: "The upstream provider is overloaded.",
}


@dataclass(frozen=True, slots=True)
class MappedError:
    """An upstream failure as the gateway answers it: HTTP status, Anthropic body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def error_type(self) -> str:
        return str(self.body["error"]["type"])

    @property
    def message(self) -> str:
        return str(self.body["error"]["message"])


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Return Anthropic's error body for ``error_type`` and ``message``."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_type_for_status(status: int) -> str:
    """Return Anthropic's error type for an HTTP status (unknown 4xx: invalid request, else api)."""
    known = _TYPE_BY_STATUS.get(status)
    if known is not None:
        return known
    if 400 <= status < 500:
        return INVALID_REQUEST_ERROR
    return API_ERROR


def upstream_status_error(status: int) -> tuple[int, str]:
    """(Anthropic status, type) for an upstream's HTTP error status, by ``UPSTREAM_STATUS_ERRORS``;
    an unlisted 4xx is 400 ``invalid_request_error``, anything else 500 ``api_error``."""
    mapped = UPSTREAM_STATUS_ERRORS.get(status)
    if mapped is not None:
        return mapped
    return (400, INVALID_REQUEST_ERROR) if 400 <= status < 500 else (500, API_ERROR)


def is_retryable_anthropic_status(status: int) -> bool:
    """True when an Anthropic response with this status should be retried on the fallback."""
    return status in RETRYABLE_ANTHROPIC_STATUSES


def bedrock_exception_name(value: str | None) -> str | None:
    """Return the bare exception name from ``x-amzn-ErrorType`` or ``:exception-type``.

    Accepts ``ThrottlingException:http://internal.amazon.com/...`` (the HTTP header),
    ``com.amazon.coral#ThrottlingException`` (a JSON ``__type``) and ``throttlingException``
    (the eventstream header). Returns None for an empty value.
    """
    if not value:
        return None
    name = value.split(":", 1)[0]
    name = name.rsplit("#", 1)[-1].strip()
    return name or None


def bedrock_error_to_anthropic(
    *,
    status: int | None,
    error_type_header: str | None,
    exception_type: str | None,
    message: str,
    retry_after_seconds: int = DEFAULT_THROTTLE_RETRY_AFTER_SECONDS,
) -> MappedError:
    """Map a Bedrock failure to the status, body and headers Anthropic would have sent.

    ``status`` is Bedrock's HTTP status (None for an exception inside an event stream),
    ``error_type_header`` the ``x-amzn-ErrorType`` header, ``exception_type`` the eventstream
    ``:exception-type`` header and ``message`` Bedrock's ``message``. The exception name wins
    over the status; with neither known the answer is 500 ``api_error``. Rate limits carry a
    ``retry-after`` of ``retry_after_seconds`` because Bedrock sends none.
    """
    mapped: tuple[int, str] | None = None
    for raw_name in (exception_type, error_type_header):
        name = bedrock_exception_name(raw_name)
        if name is not None:
            mapped = _BEDROCK_EXCEPTIONS.get(name.lower())
            if mapped is not None:
                break
    if mapped is None and status is not None:
        mapped = _BEDROCK_STATUS_FALLBACK.get(status)
    if mapped is None:
        mapped = (500, API_ERROR)
    anthropic_status, anthropic_type = mapped

    headers: dict[str, str] = {}
    if anthropic_type == RATE_LIMIT_ERROR:
        headers["retry-after"] = str(retry_after_seconds)
    text = _anthropic_wording(message, anthropic_type)
    return MappedError(
        status=anthropic_status, body=error_body(anthropic_type, text), headers=headers
    )


def _anthropic_wording(message: str, error_type: str) -> str:
    text = message.strip()
    if text.startswith(_MODEL_ERRORS_PREFIX):
        text = text[len(_MODEL_ERRORS_PREFIX) :].strip()
    if not text:
        return _DEFAULT_MESSAGES.get(error_type, _DEFAULT_MESSAGES[API_ERROR])
    if error_type == INVALID_REQUEST_ERROR and text.lower().startswith(_BEDROCK_TOO_LONG):
        return f"{PROMPT_TOO_LONG}: {text}"
    return text
