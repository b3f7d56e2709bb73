"""System checks of the request log settings: bad values stop start-up with the setting's name."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def redact_patterns_compile(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    for pattern in settings.GATEWAY_LOG_REDACT_PATTERNS:
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(
                Error(
                    f"GATEWAY_LOG_REDACT_PATTERNS: {pattern!r} is not a regular expression: {exc}",
                    id="requestlog.E001",
                )
            )
    return errors
