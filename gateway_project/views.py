"""Project-level views that belong to no app: the liveness probe and the /ak/ catch-all."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt  # clients of /ak/ never hold a CSRF cookie; this view only says "not found"
async def proxy_not_found(request: HttpRequest, *args: object) -> JsonResponse:
    return JsonResponse(
        {
            "type": "error",
            "error": {
                "type": "not_found_error",
                "message": f"No route for {request.method} {request.path}.",
            },
        },
        status=404,
    )
