"""Admin for routing rules, the model map and model aliases, and a read-only page showing the
circuit breakers.

A circuit is named by its provider and a hash of the credential the request flow used
(``proxy.circuit.circuit_name``); the page names each one by the stored credential it belongs to
(provider, label, scope), never by anything secret, and lists every stored credential with its
circuit's state, closed when it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from accounts.metadata import ResolvedCredential
from accounts.models import Provider, ProviderCredential
from accounts.selectors import resolve_credential
from proxy.circuit import circuit_name, circuits, shared_snapshot
from proxy.models import ModelAlias, ModelMapping, RouteTarget, RoutingRule
from proxy.planning import ANTHROPIC, BEDROCK, OLLAMA, Leg
from proxy.routing import BedrockTarget, model_aliases, model_map
from proxy.rule_services import TargetSpec, routing_rules_changed, target_errors


class RouteTargetFormSet(BaseInlineFormSet):
    """Checks the targets together (tiers, weights, providers with credentials), each problem
    shown on the target's own field."""

    def clean(self) -> None:
        super().clean()
        forms = [
            form
            for form in self.forms
            if form.is_valid() and form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if not forms:
            if not any(form.errors for form in self.forms):
                raise ValidationError("A rule needs at least one target.")
            return
        specs = [
            TargetSpec(
                provider=form.cleaned_data.get("provider", ""),
                model=form.cleaned_data.get("model", ""),
                tier=form.cleaned_data.get("tier", 1),
                weight=form.cleaned_data.get("weight", 1),
                position=form.cleaned_data.get("position", 0),
            )
            for form in forms
        ]
        for form, problems in zip(forms, target_errors(self.instance, specs), strict=True):
            for field_name, message in problems.items():
                form.add_error(field_name, message)


class RouteTargetInline(admin.TabularInline):
    model = RouteTarget
    formset = RouteTargetFormSet
    fields = ("tier", "position", "provider", "model", "weight")
    extra = 1
    min_num = 0


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    """Ordered rules: the first enabled rule that matches a request makes its plan."""

    list_display = ("position", "name", "enabled", "conditions", "strategy", "targets_summary")
    list_display_links = ("name",)
    list_editable = ("enabled",)
    list_filter = ("enabled", "strategy")
    search_fields = ("name", "model_pattern", "description")
    autocomplete_fields = ("access_key", "user", "group")
    readonly_fields = ("updated_at",)
    inlines = (RouteTargetInline,)
    fieldsets = (
        (None, {"fields": ("name", "position", "enabled", "description")}),
        (
            "Matches (every condition given must hold)",
            {
                "fields": (
                    "model_pattern",
                    ("header_name", "header_value"),
                    "access_key",
                    "user",
                    "group",
                    ("min_input_tokens", "max_input_tokens"),
                    "stream",
                )
            },
        ),
        ("Targets", {"fields": ("strategy", "max_attempts", "deadline_seconds", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("targets")

    @admin.display(description="Matches")
    def conditions(self, rule: RoutingRule) -> str:
        parts = []
        if rule.model_pattern:
            parts.append(f"model {rule.model_pattern}")
        if rule.header_name:
            parts.append(f"{rule.header_name}: {rule.header_value or '*'}")
        if rule.access_key_id:
            parts.append(f"key #{rule.access_key_id}")
        if rule.user_id:
            parts.append(f"user #{rule.user_id}")
        if rule.group_id:
            parts.append(f"group #{rule.group_id}")
        if rule.min_input_tokens is not None or rule.max_input_tokens is not None:
            parts.append(f"tokens {rule.min_input_tokens or 0}–{rule.max_input_tokens or '∞'}")
        if rule.stream != RoutingRule.Stream.ANY:
            parts.append(rule.get_stream_display())
        return ", ".join(parts) or "everything"

    @admin.display(description="Targets")
    def targets_summary(self, rule: RoutingRule) -> str:
        return " → ".join(
            f"{target.provider}/{target.model or '*'}" for target in rule.targets.all()
        )

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        routing_rules_changed()

    def delete_model(self, request: HttpRequest, obj: RoutingRule) -> None:
        super().delete_model(request, obj)
        routing_rules_changed()

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset)
        routing_rules_changed()


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
        owners = circuit_owners()
        shared = circuit_rows(shared_snapshot(), owners)
        local = circuit_rows(circuits.snapshot(), owners)
        context = {
            **self.admin_site.each_context(request),
            "title": "Circuit breakers",
            "credentials": credential_rows(owners, shared=shared, local=local),
            "shared": shared,
            "local": local,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/proxy/circuits.html", context)


@dataclass(frozen=True, slots=True)
class CircuitOwner:
    """What a circuit belongs to, as the page shows it: nothing secret."""

    provider: str
    credential: str
    # The stored credential's id, for a link to it; None for an upstream used without one.
    credential_id: int | None = None
    enabled: bool = True


def _circuit_of(credential: ResolvedCredential) -> str:
    """The circuit the request flow keeps for this stored credential: the name its legs get
    from ``Leg.circuit_credential`` (a Bedrock leg's through its target)."""
    if credential.provider == BEDROCK:
        target = BedrockTarget(
            model_id="",
            endpoint="",
            api_mode=credential.api_mode,
            credential_id=credential.id,
            secret=credential.secret,
        )
        leg = Leg(BEDROCK, BEDROCK, "", bedrock=target)
    else:
        leg = Leg(credential.provider_key, credential.provider, "", credential=credential)
    return circuit_name(leg.provider, leg.circuit_credential)


def _keyless_circuit(provider: str) -> str:
    """The circuit of a leg that carries no credential at all."""
    return circuit_name(provider, Leg(provider, provider, "").circuit_credential)


def circuit_owners() -> dict[str, list[CircuitOwner]]:
    """Circuit name → the stored credentials that use it (several when they hold the same
    secret), plus the upstreams used without a credential. Decrypting is the only way to learn
    a credential's circuit, whose name hashes the secret."""
    owners: dict[str, list[CircuitOwner]] = {
        _keyless_circuit(OLLAMA): [
            CircuitOwner(
                "Ollama", f"none: GATEWAY_OLLAMA_BASE_URL ({settings.GATEWAY_OLLAMA_BASE_URL})"
            )
        ],
        _keyless_circuit(ANTHROPIC): [CircuitOwner("Anthropic", "none (the client sent none)")],
    }
    for credential in ProviderCredential.objects.select_related("user", "access_key"):
        provider = credential.get_provider_display()
        name = credential.label or f"#{credential.id}"
        owner = CircuitOwner(
            provider=f"{provider} {credential.name}" if credential.name else provider,
            credential=f"{name} ({credential.scope_description})",
            credential_id=credential.id,
            enabled=credential.enabled,
        )
        owners.setdefault(_circuit_of(resolve_credential(credential)), []).append(owner)
    return owners


def _unknown_owner(name: str) -> CircuitOwner:
    """The owner of a circuit no stored credential hashes to."""
    provider = name.partition(":")[0]
    label = Provider(provider).label if provider in Provider.values else provider
    if provider == ANTHROPIC:
        # Anthropic requests usually carry the client's own key, which the gateway never stores.
        return CircuitOwner(label, "a client's own credential")
    return CircuitOwner(label, "no stored credential (deleted or changed since)")


def circuit_rows(
    snapshot: list[dict[str, object]], owners: Mapping[str, list[CircuitOwner]]
) -> list[dict[str, object]]:
    """Circuits as the page shows them, each with who it belongs to (``owners``). The
    snapshots' ``open_for_seconds`` is the time left until the circuit lets a probe through
    (``open_until - now``), not how long it has been open: shown as ``seconds_left``, and only
    while the circuit is open."""
    rows = []
    for circuit in snapshot:
        row = {name: value for name, value in circuit.items() if name != "open_for_seconds"}
        row["seconds_left"] = circuit["open_for_seconds"] if circuit["state"] == "open" else None
        row["owners"] = owners.get(str(circuit["name"])) or [_unknown_owner(str(circuit["name"]))]
        rows.append(row)
    return rows


@dataclass(frozen=True, slots=True)
class CredentialCircuit:
    """A stored credential and the state of its circuit."""

    owner: CircuitOwner
    circuit: str
    state: object = "closed"
    seconds_left: object = None
    reason: object = ""


def credential_rows(
    owners: Mapping[str, list[CircuitOwner]],
    *,
    shared: list[dict[str, object]],
    local: list[dict[str, object]],
) -> list[CredentialCircuit]:
    """Every stored credential with its circuit's state: the shared one when Redis has it (all
    workers), else this worker's, else closed (no failure seen)."""
    known = {str(row["name"]): row for row in local} | {str(row["name"]): row for row in shared}
    rows = []
    for name, stored in owners.items():
        circuit = known.get(name, {})
        for owner in stored:
            if owner.credential_id is None:
                continue
            rows.append(
                CredentialCircuit(
                    owner=owner,
                    circuit=name,
                    state=circuit.get("state", "closed"),
                    seconds_left=circuit.get("seconds_left"),
                    reason=circuit.get("reason", ""),
                )
            )
    rows.sort(key=lambda row: (row.owner.provider.casefold(), row.owner.credential.casefold()))
    return rows
