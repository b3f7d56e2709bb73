"""Admin forms of accounts: users by email, the access-key add form, and provider credentials with
a write-only secret.

Forms validate input only; the admin saves through accounts.services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import CredentialInvalid, pool_fields_clean, provider_credential_clean


class UserCreationForm(auth_forms.AdminUserCreationForm):
    """Adds a user by email; the password may be left unusable (key holders need none)."""

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"].strip())
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError("A user with this email already exists.", code="unique")
        return email


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"].strip())
        others = User.objects.filter(email__iexact=email).exclude(pk=self.instance.pk)
        if others.exists():
            raise ValidationError("A user with this email already exists.", code="unique")
        return email


class AccessKeyForm(forms.ModelForm):
    """Owner, label and expiry of a key; the key itself is generated when it is saved."""

    class Meta:
        model = AccessKey
        fields = ("user", "label", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        # An unchanged expiry may lie in the past (editing the label of an expired key).
        unchanged = not self.instance._state.adding and expires_at == self.instance.expires_at
        if expires_at is not None and not unchanged and expires_at <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return expires_at


class ProviderCredentialForm(forms.ModelForm):
    """The secret is write-only: never rendered back, blank keeps the stored one on change.

    Which fields a provider takes, and when a changed endpoint needs the secret entered again,
    is decided by accounts.services.provider_credential_clean (the command uses it too); its
    errors are shown on the fields they concern. ``may_redirect`` is set by the admin from the
    editor's permissions.
    """

    may_redirect = False

    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave blank to keep the stored one "
        "(changing the provider or endpoint needs it entered again). Anthropic, Bedrock, "
        "OpenAI, Gemini: required. Generic servers: optional. Ollama: none.",
    )

    class Meta:
        model = ProviderCredential
        fields = (
            "provider",
            "name",
            "user",
            "access_key",
            "label",
            "region",
            "api_mode",
            "endpoint_url",
            "fallback_model",
            "weight",
            "rpm_limit",
            "tpm_limit",
            "max_concurrency",
        )
        help_texts = {
            "provider": "Anthropic, OpenAI, Gemini: a secret (API key), endpoint optional. "
            "Bedrock: a secret, region, API mode, fallback model. Ollama: endpoint only "
            "(default GATEWAY_OLLAMA_BASE_URL). Generic (any OpenAI-compatible server): a "
            "name and a base URL, secret optional.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "weight" in self.fields:
            self.fields["weight"].required = False  # empty: 1
        if self.instance._state.adding:
            self.fields["secret"].help_text = (
                "Stored encrypted and never shown again. Anthropic, Bedrock, OpenAI, Gemini: "
                "required. Generic servers: optional. Ollama: none."
            )

    def clean(self) -> dict[str, Any]:
        # Errors are attached to fields so that the model's constraint checks, which would say
        # the same less clearly, skip them.
        super().clean()
        cleaned = self.cleaned_data
        user, access_key = cleaned.get("user"), cleaned.get("access_key")
        if user is not None and access_key is not None:
            self.add_error(
                "access_key",
                "Scope the credential to a user or to an access key, not both "
                "(leave both empty for the global default).",
            )
            return cleaned
        provider = cleaned.get("provider")
        if not provider:
            return cleaned
        stored = None
        if not self.instance._state.adding:
            stored = ProviderCredential.objects.filter(pk=self.instance.pk).first()
        try:
            fields = provider_credential_clean(
                provider=provider,
                name=cleaned.get("name") or "",
                secret=cleaned.get("secret") or None,
                region=cleaned.get("region") or "",
                api_mode=cleaned.get("api_mode") or "",
                endpoint_url=cleaned.get("endpoint_url") or "",
                fallback_model=cleaned.get("fallback_model") or "",
                label=cleaned.get("label") or "",
                stored=stored,
                may_redirect=self.may_redirect,
            )
        except CredentialInvalid as exc:
            for field_name, message in exc.errors.items():
                target = field_name if field_name in self.fields else None
                if field_name not in self.errors:
                    self.add_error(target, message)
            return cleaned
        for field_name in ("name", "region", "api_mode", "endpoint_url", "fallback_model", "label"):
            cleaned[field_name] = getattr(fields, field_name)
        cleaned["secret"] = fields.secret or ""
        # Several credentials of one provider (and name) and scope form that scope's key pool;
        # a pool needs a member that takes requests in turn.
        others = list(
            ProviderCredential.objects.filter(
                provider=provider, name=fields.name, user=user, access_key=access_key
            ).exclude(pk=self.instance.pk)
        )
        weight = cleaned.get("weight")
        cleaned["weight"] = weight = 1 if weight is None else int(weight)
        try:
            pool_fields_clean(
                weight=weight,
                rpm_limit=cleaned.get("rpm_limit"),
                tpm_limit=cleaned.get("tpm_limit"),
                max_concurrency=cleaned.get("max_concurrency"),
                others=others,
                enabled=self.instance.enabled,
            )
        except CredentialInvalid as exc:
            for field_name, message in exc.errors.items():
                if field_name not in self.errors:
                    self.add_error(field_name, message)
        return cleaned
