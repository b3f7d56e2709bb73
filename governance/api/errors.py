"""Errors of the management API: a 400 names the parameter at fault, a 404 the unknown id.

Body: ``{"detail": "...", "param": "..."}``, the usage API's shape.
"""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, Schema
from ninja.errors import ValidationError as NinjaValidationError

from accounts.services import AccountsError, CredentialInvalid

M = TypeVar("M", bound=Model)

# Ids beyond a 64-bit integer cannot exist; PostgreSQL would refuse the query outright.
MAX_ID = 2**63 - 1


class ApiError(Exception):
    def __init__(self, status: int, detail: str, param: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.param = param


class ErrorOut(Schema):
    detail: str
    # Absent from the framework's own refusals (an unparsable body, a 403).
    param: str = Field("", description="The parameter at fault, when one is.")


def api_error_response(request: HttpRequest, exc: ApiError | type[ApiError]) -> HttpResponse:
    if not isinstance(exc, ApiError):
        return JsonResponse({"detail": "Bad request.", "param": "request"}, status=400)
    return JsonResponse({"detail": exc.detail, "param": exc.param}, status=exc.status)


def domain_error_response(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
    """A service's refusal (Django validation, accounts) as a 400 naming the field."""
    if isinstance(exc, DjangoValidationError) and hasattr(exc, "error_dict"):
        param = next(iter(exc.error_dict), "request")
        detail = "; ".join(
            f"{name}: {' '.join(str(m) for e in errors for m in e.messages)}"
            for name, errors in exc.error_dict.items()
        )
        return JsonResponse({"detail": detail, "param": _public(param)}, status=400)
    if isinstance(exc, CredentialInvalid):
        param = next(iter(exc.errors), "request")
        return JsonResponse({"detail": str(exc), "param": _public(param)}, status=400)
    if isinstance(exc, DjangoValidationError):
        return JsonResponse({"detail": " ".join(exc.messages), "param": "request"}, status=400)
    detail = str(exc) if isinstance(exc, AccountsError) else "Bad request."
    return JsonResponse({"detail": detail, "param": "request"}, status=400)


def _public(field: str) -> str:
    """A model field as the API names it (``user`` is ``user_id`` in requests)."""
    if field in ("user", "access_key"):
        return f"{field}_id"
    return "request" if field == "__all__" else field


def get_or_404(model: type[M], object_id: int, what: str) -> M:
    if not 1 <= object_id <= MAX_ID:
        raise ApiError(404, f"No {what} {object_id}.", "id")
    found = model._default_manager.filter(pk=object_id).first()
    if found is None:
        raise ApiError(404, f"No {what} {object_id}.", "id")
    return found


def validation_error_response(
    request: HttpRequest, exc: NinjaValidationError | type[NinjaValidationError]
) -> HttpResponse:
    """The framework's 422 for a malformed request as a 400 naming the parameter: the field of
    a body, not a list index inside it (query parameters as the usage API names them)."""
    names: list[str] = []
    messages: list[str] = []
    errors = exc.errors if isinstance(exc, NinjaValidationError) else []
    for error in errors:
        location = [
            str(part)
            for part in error.get("loc", ())
            if not isinstance(part, int) and part not in _LOCATION_WORDS
        ]
        name = location[-1] if location else "request"
        name = "from" if name == "from_" else name
        names.append(name)
        messages.append(f"{name}: {error.get('msg', 'invalid value')}")
    return JsonResponse(
        {"detail": "; ".join(messages) or "invalid request", "param": ",".join(names)},
        status=400,
    )


_LOCATION_WORDS = frozenset({"query", "params", "body", "payload", "path"})
