"""Admin forms of accounts: users by email, the access-key add form, and provider credentials with
a write-only secret.

Forms validate input only; the admin saves through accounts.services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import (
    AccountsError,
    provider_endpoint_validate,
    provider_secret_validate,
)


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


def https_by_default(db_field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """The form field of a model field, where a URL typed without scheme means https."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ProviderCredentialForm(forms.ModelForm):
    """The secret is write-only: never rendered back, required on add, blank keeps it on change."""

    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave blank to keep the stored one.",
    )

    class Meta:
        model = ProviderCredential
        fields = (
            "provider",
            "user",
            "access_key",
            "label",
            "region",
            "api_mode",
            "endpoint_url",
            "fallback_model",
        )
        formfield_callback = https_by_default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            self.fields["secret"].required = True
            self.fields["secret"].help_text = "Stored encrypted and never shown again."

    def clean_endpoint_url(self) -> str:
        try:
            return provider_endpoint_validate(self.cleaned_data.get("endpoint_url") or "")
        except AccountsError as exc:
            raise ValidationError(str(exc)) from exc

    def clean_secret(self) -> str:
        secret: str = self.cleaned_data.get("secret", "")
        if not secret:
            return ""
        try:
            return provider_secret_validate(secret)
        except AccountsError as exc:
            raise ValidationError(str(exc)) from exc

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
        if provider:
            same_scope = ProviderCredential.objects.filter(
                provider=provider, user=user, access_key=access_key
            ).exclude(pk=self.instance.pk)
            if same_scope.exists():
                self.add_error(
                    "provider",
                    "This scope already has a credential for this provider; edit that one.",
                )
        return cleaned
