"""Django Admin for accounts: users with their keys, access keys, provider credentials.

Every write goes through accounts.services (which also invalidates the proxy's key cache). A new
plaintext key is shown once, in an admin message; messages live in a cookie (MESSAGE_STORAGE), so
the plaintext never reaches the database. Stored secrets are never rendered: credentials have a
write-only secret field and show a four-character fingerprint.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import (
    AccessKeyForm,
    ProviderCredentialForm,
    UserChangeForm,
    UserCreationForm,
)
from accounts.models import AccessKey, CredentialPool, ProviderCredential, User
from accounts.selectors import (
    credential_pools,
    pool_strategies,
    provider_credential_decrypts,
    resolve_credential,
)
from accounts.services import (
    REDIRECT_PERMISSION,
    AccountsError,
    access_key_create,
    access_key_revoke,
    access_key_rotate,
    access_key_soft_delete,
    access_key_update,
    credential_pool_set_strategy,
    provider_credential_delete,
    provider_credential_save,
    provider_credential_set_enabled,
    user_delete,
    user_save,
)

# New plaintext keys travel in the message cookie, which holds about 2 KB; messages that do not
# fit are dropped silently, and a dropped plaintext is a lost key. Bulk actions stop below that.
MAX_KEYS_PER_ACTION = 5


def new_key_message(key: AccessKey, plaintext: str) -> SafeString:
    return format_html(
        'New access key {} for {}: <code class="gateway-new-key">{}</code> '
        "Copy it now: it is not shown again.",
        key.prefix,
        key.user.email,
        plaintext,
    )


def _too_many(modeladmin: admin.ModelAdmin, request: HttpRequest, count: int) -> bool:
    if count <= MAX_KEYS_PER_ACTION:
        return False
    modeladmin.message_user(
        request,
        f"Select at most {MAX_KEYS_PER_ACTION} at a time: each new key is shown once, "
        "and only that many fit on the next page.",
        messages.ERROR,
    )
    return True


# --- Users ------------------------------------------------------------------------------------


class AccessKeyInline(admin.TabularInline):
    """The user's keys, read-only: keys are created, rotated and revoked through actions."""

    model = AccessKey
    fk_name = "user"
    fields = (
        "prefix",
        "label",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "grace_ends_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessKey]:
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password", "new_access_key")}),
        ("Personal info", {"fields": ("full_name",)}),
        (
            "Permissions",
            {
                "fields": (
                    "is_active",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                )
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("new_access_key", "last_login", "date_joined")
    list_display = ("email", "full_name", "is_staff", "is_active", "key_count", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    inlines = (AccessKeyInline,)
    actions = ("create_access_key",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_key_count=Count("access_keys", filter=Q(access_keys__deleted_at__isnull=True))
            )
        )

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        # The add page has no keys to show yet.
        return self.inlines if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # Through the service: whether the user is active decides whether their keys work.
        user_save(user=obj)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_delete(user=user)

    @admin.display(description="keys", ordering="live_key_count")
    def key_count(self, obj: User) -> int:
        return int(getattr(obj, "live_key_count", 0))

    @admin.display(description="new access key")
    def new_access_key(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:accounts_accesskey_add")
        return format_html('<a href="{}?user={}">Create an access key…</a>', url, obj.pk)

    @admin.action(description="Create access key (shown once)", permissions=["change"])
    def create_access_key(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset[: MAX_KEYS_PER_ACTION + 1])
        if _too_many(self, request, len(users)):
            return
        for user in users:
            key, plaintext = access_key_create(user=user)
            self.log_change(request, user, f"Created access key {key.prefix}.")
            self.message_user(request, new_key_message(key, plaintext), messages.SUCCESS)


# --- Access keys ------------------------------------------------------------------------------


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("never", "Never expires"),
            ("expired", "Expired"),
            ("week", "Expires within 7 days"),
            ("later", "Expires later"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        week = now + timedelta(days=7)
        match self.value():
            case "never":
                return queryset.filter(expires_at__isnull=True)
            case "expired":
                return queryset.filter(expires_at__lte=now)
            case "week":
                return queryset.filter(expires_at__gt=now, expires_at__lte=week)
            case "later":
                return queryset.filter(expires_at__gt=week)
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    """Deleted keys are hidden unless asked for (they stay for their usage history)."""

    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Not deleted"), ("yes", "Deleted"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        current = self.value() or "no"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        match self.value() or "no":
            case "no":
                return queryset.filter(deleted_at__isnull=True)
            case "yes":
                return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    form = AccessKeyForm
    list_display = (
        "prefix",
        "label",
        "user_email",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "grace_ends_at",
    )
    list_filter = ("status", ExpiryFilter, DeletedFilter)
    search_fields = ("prefix", "user__email", "label")
    list_select_related = ("user",)
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-created_at",)
    autocomplete_fields = ("user",)
    actions = ("rotate_keys", "revoke_keys")

    add_fields = ("user", "label", "expires_at")
    change_fields = (
        "id",
        "prefix",
        "hash_preview",
        "user",
        "label",
        "expires_at",
        "status",
        "created_at",
        "last_used_at",
        "grace_ends_at",
        "revoked_at",
        "replaced_by",
        "deleted_at",
    )
    change_readonly_fields = (
        "id",
        "prefix",
        "hash_preview",
        "user",
        "status",
        "created_at",
        "last_used_at",
        "grace_ends_at",
        "revoked_at",
        "replaced_by",
        "deleted_at",
    )

    def get_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> Any:
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> Any:
        return () if obj is None else self.change_readonly_fields

    @admin.display(description="user", ordering="user__email")
    def user_email(self, obj: AccessKey) -> str:
        return obj.user.email

    @admin.display(description="key hash")
    def hash_preview(self, obj: AccessKey) -> str:
        # Enough to tell two hashes apart, nothing more is useful to show.
        return f"{obj.key_hash[:12]}…" if obj.key_hash else "-"

    def save_model(self, request: HttpRequest, obj: AccessKey, form: Any, change: bool) -> None:
        if change:
            access_key_update(access_key=obj, label=obj.label, expires_at=obj.expires_at)
            return
        key, plaintext = access_key_create(
            user=obj.user, label=obj.label, expires_at=obj.expires_at
        )
        # The admin goes on with ``obj`` (change log, redirect): make it the created key.
        for field in AccessKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        obj._state.db = key._state.db
        self.message_user(request, new_key_message(key, plaintext), messages.SUCCESS)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # A delete here is a soft delete of the keys alone: the confirmation page must not list
        # their credentials and history as going away with them.
        keys = list(objs)
        summary = {str(AccessKey._meta.verbose_name_plural): len(keys)}
        return [str(key) for key in keys], summary, set(), []

    def delete_model(self, request: HttpRequest, obj: AccessKey) -> None:
        access_key_soft_delete(access_key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        for key in queryset:
            access_key_soft_delete(access_key=key)

    @admin.action(
        description="Rotate selected keys (new key shown once; old key in grace)",
        permissions=["change"],
    )
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        keys = list(queryset.select_related("user")[: MAX_KEYS_PER_ACTION + 1])
        if _too_many(self, request, len(keys)):
            return
        for key in keys:
            try:
                new, plaintext = access_key_rotate(access_key=key)
            except AccountsError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            self.log_change(request, key, f"Rotated; replaced by {new.prefix}.")
            self.message_user(request, new_key_message(new, plaintext), messages.SUCCESS)
            self.message_user(
                request,
                f"The old key {key.prefix} keeps working until "
                f"{key.grace_ends_at:%Y-%m-%d %H:%M %Z}.",
                messages.INFO,
            )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        revoked: list[str] = []
        for key in queryset:
            if access_key_revoke(access_key=key):
                self.log_change(request, key, "Revoked.")
                revoked.append(key.prefix)
        if revoked:
            self.message_user(request, f"Revoked {', '.join(revoked)}.", messages.SUCCESS)
        else:
            self.message_user(request, "The selected keys were already revoked.", messages.INFO)


# --- Provider credentials ---------------------------------------------------------------------


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("global", "Global"), ("user", "One user"), ("key", "One access key")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        match self.value():
            case "global":
                return queryset.filter(user__isnull=True, access_key__isnull=True)
            case "user":
                return queryset.filter(user__isnull=False)
            case "key":
                return queryset.filter(access_key__isnull=False)
        return queryset


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = ProviderCredentialForm
    list_display = (
        "provider",
        "name",
        "enabled",
        "scope",
        "endpoint",
        "fingerprint",
        "decrypts",
        "label",
        "weight",
        "disabled_reason",
        "updated_at",
    )
    list_filter = ("provider", "enabled", "api_mode", ScopeFilter)
    search_fields = ("name", "label", "region", "endpoint_url", "user__email", "access_key__prefix")
    list_select_related = ("user", "access_key")
    show_full_result_count = False
    autocomplete_fields = ("user", "access_key")
    readonly_fields = (
        "id",
        "fingerprint",
        "decrypts",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "created_at",
        "updated_at",
    )
    change_list_template = "admin/accounts/providercredential/change_list.html"
    fieldsets = (
        (
            None,
            {
                "fields": ("provider", "name", "label", "secret", "fingerprint", "decrypts"),
                "description": "Each provider takes its own fields (see the help texts); "
                "a field a provider does not take is refused rather than ignored.",
            },
        ),
        (
            "Scope",
            {
                "fields": ("user", "access_key"),
                "description": "Leave both empty for the global default. The most specific "
                "credential wins: access key, then user, then global.",
            },
        ),
        ("Upstream", {"fields": ("endpoint_url",)}),
        (
            "Bedrock only",
            {"fields": ("region", "api_mode", "fallback_model")},
        ),
        (
            "Key pool",
            {
                "fields": ("weight", "rpm_limit", "tpm_limit", "max_concurrency"),
                "description": "Credentials of one provider (and name) and scope form a pool; "
                "its strategy (round robin by default) is set per provider under Credential "
                "pools. A 429 rests a key until the provider's retry time; an exhausted quota "
                "or a refused key disables it, with the reason below.",
            },
        ),
        (
            "Record",
            {
                "fields": (
                    "id",
                    "enabled",
                    "disabled_reason",
                    "disabled_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    add_fieldsets = (
        (
            None,
            {
                "fields": ("provider", "name", "label", "secret"),
                "description": fieldsets[0][1]["description"],
            },
        ),
        fieldsets[1],
        fieldsets[2],
        fieldsets[3],
        fieldsets[4],
    )

    actions = ("test_credentials", "enable_credentials", "disable_credentials")

    class Media:
        js = ("accounts/credential_form.js",)

    @admin.action(description="Enable the selected credentials")
    def enable_credentials(
        self, request: HttpRequest, queryset: QuerySet[ProviderCredential]
    ) -> None:
        changed = sum(
            provider_credential_set_enabled(credential=credential, enabled=True)
            for credential in queryset
        )
        self.message_user(request, f"{changed} credential(s) enabled.")

    @admin.action(description="Disable the selected credentials")
    def disable_credentials(
        self, request: HttpRequest, queryset: QuerySet[ProviderCredential]
    ) -> None:
        changed = sum(
            provider_credential_set_enabled(credential=credential, enabled=False)
            for credential in queryset
        )
        self.message_user(request, f"{changed} credential(s) disabled.")

    @admin.action(description="Test: ask the provider for its model list")
    def test_credentials(
        self, request: HttpRequest, queryset: QuerySet[ProviderCredential]
    ) -> None:
        from proxy.catalog import credential_check

        for credential in queryset.select_related("user", "access_key")[:20]:
            worked, detail = async_to_sync(credential_check)(resolve_credential(credential))
            level = messages.SUCCESS if worked else messages.ERROR
            self.message_user(request, f"{credential}: {detail}", level=level)

    def get_fieldsets(self, request: HttpRequest, obj: ProviderCredential | None = None) -> Any:
        # Nothing is recorded before the first save: no id, dates or fingerprint to show.
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: ProviderCredential | None = None
    ) -> Any:
        return () if obj is None else self.readonly_fields

    def get_form(
        self,
        request: HttpRequest,
        obj: ProviderCredential | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.may_redirect = self._may_redirect(request)  # type: ignore[attr-defined]
        return form

    def _may_redirect(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(REDIRECT_PERMISSION))

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "health/",
                self.admin_site.admin_view(self.health_view),
                name="accounts_providercredential_health",
            )
        ]
        return custom + super().get_urls()

    def health_view(self, request: HttpRequest) -> HttpResponse:
        """Every credential's pool state: cooldown, why it was disabled, use this minute."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Credential health",
            "opts": self.model._meta,
            "pools": credential_health(),
            "shared": bool(settings.REDIS_URL),
        }
        return TemplateResponse(request, "admin/accounts/providercredential/health.html", context)

    @method_decorator(sensitive_post_parameters("secret"))
    def changeform_view(self, *args: Any, **kwargs: Any) -> Any:
        return super().changeform_view(*args, **kwargs)

    @admin.display(description="scope")
    def scope(self, obj: ProviderCredential) -> str:
        return obj.scope_description

    @admin.display(description="endpoint", ordering="endpoint_url")
    def endpoint(self, obj: ProviderCredential) -> str:
        return obj.endpoint_url or "default"

    @admin.display(description="fingerprint")
    def fingerprint(self, obj: ProviderCredential) -> str:
        return obj.fingerprint or "-"

    @admin.display(description="decrypts", boolean=True)
    def decrypts(self, obj: ProviderCredential) -> bool | None:
        if not obj.secret_ciphertext:
            return None
        return provider_credential_decrypts(obj)

    def save_model(
        self, request: HttpRequest, obj: ProviderCredential, form: Any, change: bool
    ) -> None:
        provider_credential_save(
            credential=obj,
            secret=form.cleaned_data.get("secret") or None,
            may_redirect=self._may_redirect(request),
        )

    def delete_model(self, request: HttpRequest, obj: ProviderCredential) -> None:
        provider_credential_delete(credential=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderCredential]) -> None:
        for credential in queryset:
            provider_credential_delete(credential=credential)


def credential_health() -> list[dict[str, Any]]:
    """The pools as the health page shows them, each member with its live state."""
    from proxy.pools.state import credential_states

    strategies = pool_strategies()
    now = time.time()
    states = credential_states(now)
    pools = []
    for (provider, name, _user_id, _key_id), members in credential_pools():
        rows = []
        for member in members:
            live = states.get(member.pk, {})
            until = live.get("cooldown_until")
            if not member.enabled:
                state = "disabled by the gateway" if member.disabled_reason else "disabled"
            elif until:
                state = "cooling down"
            else:
                state = "ready"
            rows.append(
                {
                    "credential": member,
                    "state": state,
                    "cooldown_until": datetime.fromtimestamp(until, UTC) if until else None,
                    "cooldown_seconds": max(0, round(until - now)) if until else None,
                    "cooldown_reason": live.get("cooldown_reason", ""),
                    "in_flight": live.get("in_flight", 0),
                    "requests": live.get("requests_this_minute", 0),
                    "tokens": live.get("tokens_this_minute", 0),
                }
            )
        provider_key = name or provider
        pools.append(
            {
                "provider_key": provider_key,
                "scope": members[0].scope_description,
                "strategy": dict(CredentialPool._meta.get_field("strategy").choices or []).get(
                    strategies.get(provider_key, "round_robin"), "Round robin"
                ),
                "members": rows,
            }
        )
    return pools


@admin.register(CredentialPool)
class CredentialPoolAdmin(admin.ModelAdmin):
    """The strategy of a provider's pools (every scope); members are the credentials."""

    list_display = ("provider", "name", "strategy", "updated_at")
    list_filter = ("strategy",)
    fields = ("provider", "name", "strategy")

    def save_model(
        self, request: HttpRequest, obj: CredentialPool, form: Any, change: bool
    ) -> None:
        saved = credential_pool_set_strategy(
            provider=obj.provider, name=obj.name, strategy=obj.strategy
        )
        obj.pk = saved.pk
