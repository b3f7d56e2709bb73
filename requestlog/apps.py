"""The request log app's configuration."""

from django.apps import AppConfig


class RequestlogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "requestlog"
    verbose_name = "Request logs"
