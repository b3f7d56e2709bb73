"""Admin for the model map and model aliases, and a read-only page showing the circuit breakers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from proxy.circuit import circuits, shared_snapshot
from proxy.models import ModelAlias, ModelMapping
from proxy.routing import model_aliases, model_map


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    """Names clients may send for ``provider/model`` targets (``fast`` → ``ollama/qwen3``)."""

    list_display = ("alias", "target", "description", "enabled", "updated_at")
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    search_fields = ("alias", "target")
    readonly_fields = ("updated_at",)

    def save_model(self, request: HttpRequest, obj: ModelAlias, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        # This process sees the change at once; other workers within the table's TTL (30 s).
        model_aliases.invalidate()

    def delete_model(self, request: HttpRequest, obj: ModelAlias) -> None:
        super().delete_model(request, obj)
        model_aliases.invalidate()


@admin.register(ModelMapping)
class ModelMappingAdmin(admin.ModelAdmin):
    list_display = (
        "anthropic_model",
        "bedrock_model_id",
        "max_output_tokens",
        "enabled",
        "updated_at",
    )
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    search_fields = ("anthropic_model", "bedrock_model_id")
    readonly_fields = ("updated_at",)
    change_list_template = "admin/proxy/modelmapping_change_list.html"

    def save_model(self, request: HttpRequest, obj: ModelMapping, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        # This process sees the change at once; other workers within the map's TTL (30 s).
        model_map.invalidate()

    def delete_model(self, request: HttpRequest, obj: ModelMapping) -> None:
        super().delete_model(request, obj)
        model_map.invalidate()

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "circuits/",
                self.admin_site.admin_view(self.circuits_view),
                name="proxy_circuits",
            )
        ]
        return custom + super().get_urls()

    def circuits_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Circuit breakers",
            "shared": circuit_rows(shared_snapshot()),
            "local": circuit_rows(circuits.snapshot()),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/proxy/circuits.html", context)


def circuit_rows(snapshot: list[dict[str, object]]) -> list[dict[str, object]]:
    """Circuits as the page shows them. The snapshots' ``open_for_seconds`` is the time left
    until the circuit lets a probe through (``open_until - now``), not how long it has been
    open: shown as ``seconds_left``, and only while the circuit is open."""
    rows = []
    for circuit in snapshot:
        row = {name: value for name, value in circuit.items() if name != "open_for_seconds"}
        row["seconds_left"] = circuit["open_for_seconds"] if circuit["state"] == "open" else None
        rows.append(row)
    return rows
