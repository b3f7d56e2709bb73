"""URL configuration: Django Admin, the proxy routes under /ak/<key>/ and the health check."""

from django.contrib import admin
from django.urls import path

from gateway_project.api import proxy_api
from gateway_project.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("ak/", proxy_api.urls),
]
