"""The request log app's configuration."""

from django.apps import AppConfig


class RequestlogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "requestlog"
    verbose_name = "Request logs"

    def ready(self) -> None:
        from requestlog import checks  # noqa: F401 (registers the system checks)
