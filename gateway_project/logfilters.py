"""Masking credentials in log records before any handler writes them.

Access keys travel in URLs (``/ak/<key>/…``, a key as the first path segment, ``?key=<key>``),
admin tokens in ``?token=`` and in Authorization headers, and URLs end up in log lines: Django's
request logger, uvicorn's loggers, exceptions that quote a path. ``RedactSecretsFilter`` is
attached to every handler in settings.LOGGING and rewrites the message, the extras and the
traceback text of each record; ``redact_secrets`` is the same masking for one string.

A gateway key keeps its public prefix (``gw_k3x9q2mb…``: it names the key in the admin without
being usable); any other secret value is replaced entirely. Nothing here imports settings: the
logging configuration instantiates the filter while settings are being applied.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable

MASK = "***"
ELLIPSIS = "…"

# accounts.crypto: "gw_" + 8 lowercase letters/digits (the public prefix) + "_" + the secret in
# url-safe base64. Any case, and a partial secret too: mistyped keys are still mostly secret.
_ACCESS_KEY = re.compile(r"(?<![A-Za-z0-9])(gw_[A-Za-z0-9]{8})_[A-Za-z0-9_\-]*", re.IGNORECASE)
# Whatever follows /ak/ is a key, gateway-shaped or not (a client pasting its provider key).
_KEY_PATH_SEGMENT = re.compile(r"(/ak/)([^/\s\"'?#&<>]+)", re.IGNORECASE)
# Query-style values: ?key=…, &token=…, api_key=…, access_token=… (also inside JSON-ish text).
_SECRET_PARAMETER = re.compile(
    r"(?<![A-Za-z0-9])((?:access[_-]?|api[_-]?|auth[_-]?)?(?:key|token)=)([^&\s\"'#<>]+)",
    re.IGNORECASE,
)
# Credentials in header form: "Bearer <token>", "x-api-key: <key>".
_BEARER = re.compile(r"(?<![A-Za-z0-9])(bearer\s+)([A-Za-z0-9._~+/=\-]+)", re.IGNORECASE)
_API_KEY_HEADER = re.compile(
    r"((?:x-api-key|x-goog-api-key)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}]+)", re.IGNORECASE
)
# Anthropic keys a client may have put where its gateway key belongs.
_PROVIDER_KEY = re.compile(r"(?<![A-Za-z0-9])(sk-ant-)[A-Za-z0-9_\-]{8,}")

_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
}


def _masked_key(match: re.Match[str]) -> str:
    return f"{match.group(1)}{ELLIPSIS}"


def _masked_value(value: str) -> str:
    """A secret value: a gateway key keeps its prefix, anything else goes entirely."""
    masked = _ACCESS_KEY.sub(_masked_key, value)
    if masked != value and masked.endswith(ELLIPSIS):
        return masked
    if value.endswith(ELLIPSIS) or value == MASK:
        return value  # masked already, by an earlier pattern
    return MASK


def _masked_path_segment(match: re.Match[str]) -> str:
    return match.group(1) + _masked_value(match.group(2))


def _masked_group(match: re.Match[str]) -> str:
    return match.group(1) + _masked_value(match.group(2))


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_ACCESS_KEY, _masked_key),
    (_KEY_PATH_SEGMENT, _masked_path_segment),
    (_SECRET_PARAMETER, _masked_group),
    (_BEARER, _masked_group),
    (_API_KEY_HEADER, _masked_group),
    (_PROVIDER_KEY, lambda match: match.group(1) + ELLIPSIS),
)


def redact_secrets(text: str) -> str:
    """``text`` with access keys, tokens and API keys masked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Masks credentials in the message, the arguments, the extras and the traceback of every
    record. Attach it to handlers (not loggers): records of child loggers reach a handler
    without passing their parents' filters."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A malformed call: logging would print its arguments raw while reporting it, so
            # they become part of the (masked) message instead.
            message = f"{record.msg} {record.args!r}"
            record.args = None
        masked = redact_secrets(message)
        if masked != message:
            # Formatted once here, so no argument is printed unmasked later.
            record.msg = masked
            record.args = None
        for name, value in list(vars(record).items()):
            if name in _STANDARD_RECORD_FIELDS or value is None:
                continue
            # Django's request logger passes the request object, which formatters print with
            # its path; any extra that prints a secret is replaced by its masked text.
            text = value if isinstance(value, str) else _safe_str(value)
            if text is not None and (masked_text := redact_secrets(text)) != text:
                setattr(record, name, masked_text)
        self._mask_traceback(record)
        return True

    @staticmethod
    def _mask_traceback(record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            masked = redact_secrets(record.exc_text)
            if masked != record.exc_text:
                # Formatters print exc_text when exc_info is gone; with exc_info they would
                # format the exception again, unmasked.
                record.exc_text = masked
                record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)


def _safe_str(value: object) -> str | None:
    try:
        return str(value)
    except Exception:
        return None


# Set in a request's task when the proxy closed its stream because the client stopped reading
# (gateway_project.asgi), which the proxy logs itself. The server then reports the response as
# unfinished, rightly but in an ERROR line of its own per stalled client.
CLIENT_STALLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "client_stalled", default=False
)
_UNFINISHED_RESPONSE = "ASGI callable returned without completing response."


class StalledClientFilter(logging.Filter):
    """Drops the server's "returned without completing response" line for a stream the proxy
    closed on a client that stopped reading (on the server's logger: it logs in the request's
    own task, whose context says so). Any other unfinished response is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _UNFINISHED_RESPONSE and CLIENT_STALLED.get())
