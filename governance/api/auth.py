"""Who may use the management API: the admin token (read and write), the read-only token
(GET only: a write answers 403), or a Django admin session of active staff (reads; writes need
the model permission the admin would ask for)."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

FULL_ACCESS = "admin-token"
READ_ONLY = "readonly-token"


def _matches(token: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


class AdminTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> str | None:
        if _matches(token, settings.GATEWAY_ADMIN_API_TOKEN):
            return FULL_ACCESS
        if _matches(token, settings.GATEWAY_ADMIN_API_READONLY_TOKEN):
            # Refused here, before the request is validated: whatever the body, a 403.
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                raise HttpError(403, "The read-only token cannot change anything.")
            return READ_ONLY
        return None


class StaffSessionAuth(APIKeyCookie):
    param_name = settings.SESSION_COOKIE_NAME

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = request.user
        if not user.is_authenticated:
            return None
        if user.is_active and user.is_staff:
            return user
        raise HttpError(403, "The admin API is for staff only.")


AUTH = [AdminTokenAuth(), StaffSessionAuth()]


def require_write(request: HttpRequest, permission: str) -> None:
    """403 unless the caller may make this change."""
    caller = request.auth  # type: ignore[attr-defined]
    if caller == FULL_ACCESS:
        return
    if caller == READ_ONLY:
        raise HttpError(403, "The read-only token cannot change anything.")
    if not caller.has_perm(permission):
        raise HttpError(403, f"Changing this needs the {permission} permission.")
