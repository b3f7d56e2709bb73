"""The usage app's configuration."""

from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        # Registers the spool depth gauge with the metrics view in every process that serves
        # /metrics, whether or not it has recorded an event yet.
        from usage import recording  # noqa: F401
