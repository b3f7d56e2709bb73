"""URL configuration: Django Admin, the proxy routes under /ak/<key>/ and the health check."""

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView
from django.views.static import serve

from gateway_project.api import admin_api, openai_api, proxy_api
from gateway_project.errors import api_not_found
from gateway_project.observability import metrics_view
from gateway_project.views import healthz
from requestlog.views import media_view

handler404 = "gateway_project.errors.not_found"
handler400 = "gateway_project.errors.refused"

urlpatterns = [
    # The front page is the admin: the gateway's only pages for people.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    # Request log media, for logged-in staff (requestlog.views).
    path("media/<str:sha256>", media_view, name="requestlog_media"),
    # Anything under /ak/ that no proxy route knows (no key, an unknown path) gets a 404 that
    # clients can parse; the bare prefix first, because ninja would answer it with its own page.
    re_path(r"^ak/?$", api_not_found),
    path("ak/", proxy_api.urls),
    re_path(r"^ak/", api_not_found),
    path("api/", admin_api.urls),
    path("v1/", openai_api.urls),
    # Unknown API paths get a JSON 404 even with DEBUG on (Django's debug page otherwise);
    # handler404 does the same for any other path that does not come from a browser.
    re_path(r"^(api|v1beta|v2)/", api_not_found),
]

if settings.GATEWAY_SERVE_STATIC:
    urlpatterns.append(
        re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
    )
