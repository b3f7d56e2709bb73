"""Middleware of the site outside the proxy routes.

``single_valued_query``: the admin API's query parameters each take one value. A parameter given
twice (``?model=a&model=b``) would otherwise be read as its last value, silently; it is a 400
naming the parameter instead, in the admin API's error shape. A value holding a NUL character is
refused the same way: PostgreSQL refuses NUL in text, so it would reach any filter as a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/admin/"


def bad_parameter(request: HttpRequest) -> tuple[str, str] | None:
    """The first query parameter the admin API refuses, with the reason, or None."""
    if not request.path.startswith(API_PREFIX):
        return None
    for name in request.GET:
        values = request.GET.getlist(name)
        if len(values) > 1:
            return name, "give it once"
        if "\x00" in name or "\x00" in values[0]:
            return name.replace("\x00", ""), "NUL characters are not allowed"
    return None


def _refusal(bad: tuple[str, str]) -> JsonResponse:
    name, reason = bad
    return JsonResponse({"detail": f"{name}: {reason}.", "param": name}, status=400)


def single_valued_query(
    get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            bad = bad_parameter(request)
            if bad is not None:
                return _refusal(bad)
            return await get_response(request)

        markcoroutinefunction(async_middleware)
        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        bad = bad_parameter(request)
        if bad is not None:
            return _refusal(bad)
        return get_response(request)  # type: ignore[return-value]

    return middleware


single_valued_query.async_capable = True  # type: ignore[attr-defined]
single_valued_query.sync_capable = True  # type: ignore[attr-defined]
