"""URL configuration: Django Admin, the proxy routes under /ak/<key>/ and the health check."""

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve

from gateway_project.api import admin_api, proxy_api
from gateway_project.views import healthz, proxy_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("ak/", proxy_api.urls),
    # Anything else under /ak/ (no key, or a path no route knows): a 404 clients can parse.
    re_path(r"^ak(/.*)?$", proxy_not_found),
    path("api/", admin_api.urls),
]

if settings.GATEWAY_SERVE_STATIC:
    urlpatterns.append(
        re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
    )
