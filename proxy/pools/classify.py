"""What an upstream's error says about the credential that got it: pure functions, no I/O.

``classify`` sorts a failed answer into

- ``RATE_LIMITED``: the key is over a short-term limit; it cools down until the provider's
  retry hint (``retry-after-ms``, ``retry-after``, Anthropic's and OpenAI's reset headers,
  Gemini's ``RetryInfo``), or a default when there is none;
- ``QUOTA``: the account is out of credit or over a long-term quota (OpenAI
  ``insufficient_quota``, Anthropic "credit balance is too low", Gemini ``RESOURCE_EXHAUSTED``
  over a quota that is not per minute, a 402): waiting a minute does not help, so the key is
  disabled until an admin or the probe enables it again;
- ``AUTH``: the provider refused the key (401, a 403 that is not about one model, Gemini's
  ``API_KEY_INVALID``): disabled with the provider's reason;
- ``SERVER``: a 5xx or overload, which counts toward the key's circuit as before;
- ``NONE``: the request's own fault (a bad parameter, an unknown model), nothing about the key.

It reads the error bodies of the three shapes the providers use (OpenAI's
``{"error": {"message", "type", "code"}}``, Anthropic's ``{"type": "error", "error": {"type",
"message"}}``, Google's ``{"error": {"code", "status", "message", "details"}}``), whichever
upstream sent them: OpenAI-compatible servers copy OpenAI's shape loosely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from proxy import jsonio

# Statuses whose body is read to tell a refused key from a refused request.
CREDENTIAL_STATUSES = frozenset({400, 401, 402, 403})


class FaultKind(StrEnum):
    NONE = "none"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    AUTH = "auth"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Fault:
    """``retry_at`` (epoch seconds) is the provider's hint for a rate limit, None without one;
    ``detail`` is what to tell the admin (the provider's message, shortened)."""

    kind: FaultKind
    detail: str = ""
    retry_at: float | None = None

    @property
    def disables(self) -> bool:
        return self.kind in (FaultKind.QUOTA, FaultKind.AUTH)

    @property
    def credential_fault(self) -> bool:
        """Another key of the same pool may well succeed where this one failed."""
        return self.kind in (FaultKind.RATE_LIMITED, FaultKind.QUOTA, FaultKind.AUTH)


_QUOTA_WORDS = re.compile(
    r"insufficient[_ ]quota|exceeded your current quota|credit balance|billing|"
    r"out of credits?|insufficient (credits|balance|funds)|payment required|spend limit|"
    r"monthly (usage )?limit|hard limit",
    re.IGNORECASE,
)
# On a 429 only the unambiguous wording counts: OpenAI's free-tier rate-limit messages mention
# adding a payment method on the billing page, and are still rate limits.
_QUOTA_WORDS_429 = re.compile(
    r"exceeded your current quota|credit balance|out of credits?|"
    r"insufficient (credits|balance|funds)",
    re.IGNORECASE,
)
_QUOTA_CODES = frozenset(
    {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "quota_exceeded"}
)
_PER_MINUTE = re.compile(r"per[ _-]?minute|perminute|_rpm|_tpm|\brpm\b|\btpm\b", re.IGNORECASE)
_AUTH_WORDS = re.compile(
    r"api[ _-]?key|invalid[_ ]x-api-key|authenticat|unauthori[sz]ed|"
    r"account (is )?(deactivated|disabled|suspended)|permission",
    re.IGNORECASE,
)
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
# A 403 about one model or one feature says nothing about the key's other requests.
_REQUEST_SCOPED = re.compile(r"\bmodel\b|region|country|territory|feature|beta", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_MAX_DETAIL = 300


def _parse(body: bytes | Mapping[str, Any] | list[Any] | None) -> Mapping[str, Any]:
    if isinstance(body, bytes | bytearray):
        try:
            body = jsonio.loads(bytes(body))
        except (ValueError, RecursionError, UnicodeDecodeError):
            return {}
    # Gemini's streamed errors come wrapped in a one-element list.
    if isinstance(body, list) and body:
        body = body[0]
    return body if isinstance(body, Mapping) else {}


@dataclass(frozen=True, slots=True)
class _Error:
    message: str
    error_type: str
    code: str
    status: str
    details: tuple[Mapping[str, Any], ...]


def _error_of(body: Mapping[str, Any]) -> _Error:
    error = body.get("error")
    if not isinstance(error, Mapping):
        message = body.get("message")
        return _Error(str(message or ""), "", "", "", ())
    details = error.get("details")
    return _Error(
        message=str(error.get("message") or ""),
        error_type=str(error.get("type") or ""),
        code=str(error.get("code") or ""),
        status=str(error.get("status") or ""),
        details=tuple(d for d in details if isinstance(d, Mapping))
        if isinstance(details, list)
        else (),
    )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | Mapping[str, Any] | list[Any] | None,
    *,
    now: float,
) -> Fault:
    """What an error answer of ``status`` says about the key that got it."""
    error = _error_of(_parse(body))
    words = " ".join(
        part for part in (error.message, error.error_type, error.code, error.status) if part
    )
    detail = _shorten(f"{status} {error.code or error.error_type or error.status}: {error.message}")
    reasons = {str(d.get("reason")) for d in error.details if d.get("reason")}
    if status == 429 or error.status == "RESOURCE_EXHAUSTED":
        if _is_quota(error, words):
            return Fault(FaultKind.QUOTA, detail)
        return Fault(FaultKind.RATE_LIMITED, detail, retry_at(headers, error, now=now))
    if status == 402 or (status in CREDENTIAL_STATUSES and _is_billing(error, words)):
        return Fault(FaultKind.QUOTA, detail)
    if status == 401 or reasons & _AUTH_REASONS:
        return Fault(FaultKind.AUTH, detail)
    if status == 403:
        if _REQUEST_SCOPED.search(error.message) and not _AUTH_WORDS.search(error.message):
            return Fault(FaultKind.NONE, detail)
        return Fault(FaultKind.AUTH, detail)
    if status == 400 and error.status == "INVALID_ARGUMENT" and "api key" in words.lower():
        return Fault(FaultKind.AUTH, detail)
    if status >= 500:
        return Fault(FaultKind.SERVER, detail)
    return Fault(FaultKind.NONE, detail)


# The wording each provider uses when a request does not fit the model's context window.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_WORDS = re.compile(
    r"maximum context length|context[ _]length[ _]exceeded|prompt is too long|"
    r"exceeds? (the )?(model's )?context (limit|length|window)|"
    r"exceeds the maximum number of tokens|input is too long|too many input tokens|"
    r"input (token count|length) .*exceed",
    re.IGNORECASE,
)
_CONTEXT_STATUSES = frozenset({400, 413, 422})


def context_overflow(status: int, body: bytes | Mapping[str, Any] | list[Any] | None) -> bool:
    """Whether an error says the request does not fit the model's context window (OpenAI's
    ``context_length_exceeded``, Anthropic's "prompt is too long", Gemini's "exceeds the
    maximum number of tokens", Bedrock's "Input is too long"): a model with a larger window
    may still answer it, unlike any other bad request."""
    if status not in _CONTEXT_STATUSES:
        return False
    error = _error_of(_parse(body))
    if error.code in _CONTEXT_CODES:
        return True
    return bool(_CONTEXT_WORDS.search(error.message))


def _is_billing(error: _Error, words: str) -> bool:
    return (
        error.code in _QUOTA_CODES
        or error.error_type in _QUOTA_CODES
        or bool(_QUOTA_WORDS.search(words))
    )


def _is_quota(error: _Error, words: str) -> bool:
    """A 429 that waiting a minute does not cure: OpenAI's ``insufficient_quota``, billing
    wording, or a Google quota that is not a per-minute one (a per-day quota, a project's)."""
    if error.code in _QUOTA_CODES or error.error_type in _QUOTA_CODES:
        return True
    if error.status == "RESOURCE_EXHAUSTED" or error.details:
        quota_ids = [
            str(violation.get("quotaId") or violation.get("quotaMetric") or "")
            for detail in error.details
            for violation in (detail.get("violations") or [])
            if isinstance(violation, Mapping)
        ]
        if quota_ids:
            return not any(_PER_MINUTE.search(quota_id) for quota_id in quota_ids)
        if "quota" in words.lower() and not _PER_MINUTE.search(words):
            return bool(_QUOTA_WORDS_429.search(words)) or "per day" in words.lower()
        return False
    return bool(_QUOTA_WORDS_429.search(words))


def duration_seconds(value: str) -> float | None:
    """OpenAI's reset durations: ``1s``, ``6m0s``, ``1h2m3.5s``, ``20ms``."""
    value = value.strip()
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _reset_time(value: str, now: float) -> float | None:
    """An absolute reset: epoch seconds, or an ISO 8601 time."""
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        number = float(value)
        # Epoch seconds are large; a small number is a delay in seconds.
        return number if number > 1e9 else now + number
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def retry_at(
    headers: Mapping[str, str], error: _Error | None = None, *, now: float
) -> float | None:
    """When a rate-limited key may be used again, from whatever the provider said; None when
    it said nothing. ``headers`` must have lower-case names."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return now + max(float(value), 0.0) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return now + float(value)
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    resets: list[float] = []
    for name, raw in headers.items():
        if name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = headers.get(name[: -len("-reset")] + "-remaining")
            if remaining is not None and remaining.strip() not in ("0", ""):
                continue
            moment = _reset_time(raw, now)
        elif name.startswith("x-ratelimit-reset-"):
            remaining = headers.get("x-ratelimit-remaining-" + name[len("x-ratelimit-reset-") :])
            if remaining is not None and remaining.strip() not in ("0", ""):
                continue
            seconds = duration_seconds(raw)
            moment = None if seconds is None else now + seconds
        else:
            continue
        if moment is not None and moment > now:
            resets.append(moment)
    if resets:
        return max(resets)
    if error is not None:
        for detail in error.details:
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", delay)
                if match:
                    return now + max(1, math.ceil(float(match.group(1))))
    return None
