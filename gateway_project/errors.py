"""The site's 404 and 400 outside the proxy routes: JSON for what looks like an API call, the
usual page for a person's browser.

An API client that mistypes a path (``/v2/messages``, ``/api/admin/usge``) or sends a request
Django refuses before any view (a Host outside ``ALLOWED_HOSTS``, an empty one) gets an error it
can parse; a browser (``Accept: text/html``) gets Django's page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request, page_not_found

_API_PREFIXES = ("/api/", "/v1/", "/v1beta/", "/ak/")


def api_error(status: int, error_type: str, message: str) -> JsonResponse:
    """An error in the shape of the site's API errors (Anthropic's envelope)."""
    return JsonResponse(
        {"type": "error", "error": {"type": error_type, "message": message}}, status=status
    )


def looks_like_api_call(request: HttpRequest) -> bool:
    if request.path.startswith(_API_PREFIXES):
        return True
    if request.method not in ("GET", "HEAD"):
        return True
    accept = request.headers.get("accept", "")
    return "text/html" not in accept


@csrf_exempt  # API clients hold no CSRF cookie; this view only says "not found"
def api_not_found(request: HttpRequest, *args: object) -> JsonResponse:
    return api_error(404, "not_found_error", f"No route for {request.method} {request.path}.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: JSON for an API client, Django's page for a browser."""
    if looks_like_api_call(request):
        return api_not_found(request)
    return page_not_found(request, exception or Exception("not found"))


def refused(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: JSON for an API client, Django's page for a browser. Says no more than
    Django's page does (the refusal's reason is in the log, not in the answer)."""
    if looks_like_api_call(request):
        return api_error(400, "invalid_request_error", "Bad request.")
    return bad_request(request, exception or Exception("bad request"))
