"""Middleware of the site outside the proxy routes.

``single_valued_query``: the admin API's query parameters each take one value. A parameter given
twice (``?model=a&model=b``) would otherwise be read as its last value, silently; it is a 400
naming the parameter instead, in the admin API's error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/admin/"


def repeated_parameter(request: HttpRequest) -> str | None:
    if not request.path.startswith(API_PREFIX):
        return None
    return next((name for name in request.GET if len(request.GET.getlist(name)) > 1), None)


def _refusal(name: str) -> JsonResponse:
    return JsonResponse({"detail": f"{name}: give it once.", "param": name}, status=400)


def single_valued_query(
    get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            name = repeated_parameter(request)
            if name is not None:
                return _refusal(name)
            return await get_response(request)

        markcoroutinefunction(async_middleware)
        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        name = repeated_parameter(request)
        if name is not None:
            return _refusal(name)
        return get_response(request)  # type: ignore[return-value]

    return middleware


single_valued_query.async_capable = True  # type: ignore[attr-defined]
single_valued_query.sync_capable = True  # type: ignore[attr-defined]
