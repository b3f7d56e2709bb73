"""Provider credentials for every provider: which fields each provider takes (one set of rules for
the services, the admin form and the command), generic servers by name, credentials without a
secret, the key metadata the proxy reads, and the hardening of where a stored secret is sent
(endpoint URLs, Bedrock regions, re-entering the secret to redirect it)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from accounts.crypto import decrypt_secret
from accounts.models import AccessKey, Provider, ProviderCredential, User
from accounts.selectors import configured_provider_keys, key_metadata_load
from accounts.services import (
    AccountsError,
    CredentialInvalid,
    encryption_keys_rotate,
    provider_credential_clean,
    provider_credential_save,
    provider_credential_set,
    provider_endpoint_validate,
)

pytestmark = pytest.mark.django_db

MakeKey = Callable[..., tuple[AccessKey, str]]
SECRET = "sk-a-good-secret-1234"  # noqa: S105
ADD = reverse("admin:accounts_providercredential_add")


def errors_of(**fields: Any) -> dict[str, str]:
    with pytest.raises(CredentialInvalid) as refused:
        provider_credential_clean(**fields)
    return refused.value.errors


# --- The rules of each provider ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"provider": "openai", "secret": SECRET}, ("openai", "", SECRET, "")),
        (
            {"provider": "gemini", "secret": SECRET, "endpoint_url": "https://gemini.internal"},
            ("gemini", "", SECRET, "https://gemini.internal"),
        ),
        ({"provider": "anthropic", "secret": f"  {SECRET} "}, ("anthropic", "", SECRET, "")),
        (
            {"provider": "generic", "name": "vllm", "endpoint_url": "http://vllm:8000"},
            ("generic", "vllm", "", "http://vllm:8000"),
        ),
        (
            {
                "provider": "generic",
                "name": "groq",
                "secret": SECRET,
                "endpoint_url": "https://api.groq.com/openai",
            },
            ("generic", "groq", SECRET, "https://api.groq.com/openai"),
        ),
        ({"provider": "ollama"}, ("ollama", "", "", "")),
        (
            {"provider": "ollama", "endpoint_url": "http://[::1]:11434"},
            ("ollama", "", "", "http://[::1]:11434"),
        ),
    ],
)
def test_each_provider_takes_its_fields(fields: dict[str, Any], expected: tuple[str, ...]) -> None:
    cleaned = provider_credential_clean(**fields)
    assert (cleaned.provider, cleaned.name, cleaned.secret, cleaned.endpoint_url) == expected
    assert (cleaned.region, cleaned.api_mode, cleaned.fallback_model) == ("", "", "")


def test_bedrock_takes_region_mode_and_fallback_model_and_defaults_to_invoke() -> None:
    cleaned = provider_credential_clean(provider="bedrock", secret=SECRET, region="us-gov-west-1")
    assert (cleaned.region, cleaned.api_mode) == ("us-gov-west-1", "invoke")
    cleaned = provider_credential_clean(
        provider="bedrock",
        secret=SECRET,
        api_mode="converse",
        fallback_model="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    assert cleaned.api_mode == "converse"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"provider": "openai"}, "secret", "OpenAI needs a secret."),
        ({"provider": "gemini", "secret": "  "}, "secret", "Google Gemini needs a secret."),
        ({"provider": "anthropic"}, "secret", "Anthropic needs a secret."),
        ({"provider": "ollama", "secret": SECRET}, "secret", "Ollama takes no secret"),
        ({"provider": "openai", "secret": "a\nb"}, "secret", "line breaks"),
        ({"provider": "generic", "endpoint_url": "https://x.example"}, "name", "needs a name"),
        ({"provider": "generic", "name": "vllm"}, "endpoint_url", "needs its base URL"),
        ({"provider": "generic", "name": "VLLM", "endpoint_url": "https://x.example"}, "name",
         "not a valid name"),
        ({"provider": "generic", "name": "-x", "endpoint_url": "https://x.example"}, "name",
         "not a valid name"),
        ({"provider": "generic", "name": "a" * 17, "endpoint_url": "https://x.example"}, "name",
         "at most 16 characters"),
        ({"provider": "generic", "name": "openai", "endpoint_url": "https://x.example"}, "name",
         "built-in provider's name"),
        ({"provider": "generic", "name": "generic", "endpoint_url": "https://x.example"}, "name",
         "built-in provider's name"),
        ({"provider": "openai", "secret": SECRET, "name": "vllm"}, "name",
         "Only generic servers have a name"),
        ({"provider": "openai", "secret": SECRET, "region": "us-east-1"}, "region",
         "Only Bedrock credentials have a region"),
        ({"provider": "ollama", "api_mode": "converse"}, "api_mode",
         "Only Bedrock credentials have a api mode"),
        ({"provider": "gemini", "secret": SECRET, "fallback_model": "m"}, "fallback_model",
         "Only Bedrock credentials have a fallback model"),
        ({"provider": "bedrock", "secret": SECRET, "api_mode": "stream"}, "api_mode",
         "Unknown mode"),
        ({"provider": "azure", "secret": SECRET}, "provider", "Unknown provider 'azure'"),
    ],
)  # fmt: skip
def test_each_provider_refuses_what_it_does_not_take(
    fields: dict[str, Any], field: str, message: str
) -> None:
    errors = errors_of(**fields)
    assert field in errors
    assert message in errors[field]


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(provider="generic", name="Bad Name", region="us-east-1")
    assert set(errors) == {"name", "endpoint_url", "region"}


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-3", "il-central-1"]
)
def test_aws_regions_are_accepted(region: str) -> None:
    assert provider_credential_clean(provider="bedrock", secret=SECRET, region=region).region == (
        region
    )


@pytest.mark.parametrize(
    "region",
    [
        "x@evil.example/#",
        "evil.example",
        "us-east-1.evil.example",
        "us-east-1/",
        "US-EAST-1",
        "us-east",
        "us-east-123",
        "useast1",
    ],
)
def test_a_region_that_is_not_an_aws_region_is_refused(region: str) -> None:
    assert (
        "not an AWS region" in errors_of(provider="bedrock", secret=SECRET, region=region)["region"]
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example.com", "is not an http(s) URL"),
        ("bedrock.example.com", "is not an http(s) URL"),
        ("https://", "is not an http(s) URL"),
        ("https://user:pass@evil.example", "no user name or password"),
        ("https://api.example.com@evil.example/v1", "no user name or password"),
        ("https://api.example.com/#", "no query"),
        ("https://api.example.com/v1#x", "no query"),
        ("https://api.example.com/v1?next=x", "no query"),
        ("https://api.example.com:99999", "invalid port"),
        ("https://exa mple.com", "spaces or backslashes"),
        ("https://api.example.com\\@evil.example", "spaces or backslashes"),
        ("https://bad_host.example", "invalid host"),
        ("https://-bad.example", "invalid host"),
    ],
)
def test_endpoint_urls_are_plain_http_urls(url: str, message: str) -> None:
    with pytest.raises(AccountsError, match=re.escape(message)):
        provider_endpoint_validate(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.groq.com/openai",
        "http://localhost:11434",
        "http://vllm:8000/v1",
        "http://10.0.0.7:8080",
        "http://[::1]:11434",
        "https://bedrock-runtime.eu-west-1.amazonaws.com/",
    ],
)
def test_endpoint_urls_that_are_accepted(url: str) -> None:
    assert provider_endpoint_validate(f"  {url} ") == url


# --- Stored credentials and the metadata the proxy reads --------------------------------------


def test_credentials_of_every_provider_reach_the_key_metadata(
    make_key: MakeKey, user: User
) -> None:
    key, _ = make_key(user=user)
    provider_credential_set(provider="openai", secret="sk-openai-global-0001")
    provider_credential_set(provider="openai", secret="sk-openai-user-0002", user=user)
    provider_credential_set(provider="gemini", secret="gemini-key-000003", access_key=key)
    provider_credential_set(provider="ollama", endpoint_url="http://ollama:11434")
    provider_credential_set(provider="generic", name="vllm", endpoint_url="http://vllm:8000")
    provider_credential_set(
        provider="generic",
        name="groq",
        secret="gsk-global-000004",
        endpoint_url="https://api.groq.com/openai",
    )
    provider_credential_set(
        provider="generic",
        name="groq",
        secret="gsk-user-0000005",
        endpoint_url="https://api.groq.com/openai",
        user=user,
    )
    metadata = key_metadata_load(key.prefix)
    assert metadata is not None
    credentials = metadata.credentials
    assert set(credentials) == {"openai", "gemini", "ollama", "vllm", "groq"}
    assert configured_provider_keys(metadata) == ["gemini", "groq", "ollama", "openai", "vllm"]
    assert (credentials["openai"].secret, credentials["openai"].scope) == (
        "sk-openai-user-0002",
        f"user {user.email}",
    )
    assert (credentials["gemini"].secret, credentials["gemini"].scope) == (
        "gemini-key-000003",
        f"key {key.prefix}",
    )
    ollama = credentials["ollama"]
    assert (ollama.provider, ollama.name, ollama.secret, ollama.error) == ("ollama", "", "", "")
    assert ollama.endpoint_url == "http://ollama:11434"
    vllm = credentials["vllm"]
    assert (vllm.provider, vllm.name, vllm.secret, vllm.endpoint_url) == (
        "generic",
        "vllm",
        "",
        "http://vllm:8000",
    )
    assert vllm.provider_key == "vllm"
    assert (credentials["groq"].secret, credentials["groq"].scope) == (
        "gsk-user-0000005",
        f"user {user.email}",
    )


def test_a_credential_without_secret_stores_no_ciphertext_and_replacing_drops_the_secret(
    db_scan: Callable[[str], list[str]],
) -> None:
    with_secret, created = provider_credential_set(
        provider="generic", name="vllm", endpoint_url="http://vllm:8000", secret="vllm-token-0001"
    )
    assert created
    assert decrypt_secret(with_secret.secret_ciphertext) == "vllm-token-0001"
    assert db_scan("vllm-token-0001") == []
    without, created = provider_credential_set(
        provider="generic", name="vllm", endpoint_url="http://vllm:8000"
    )
    assert (created, without.pk) == (False, with_secret.pk)
    assert (without.secret_ciphertext, without.secret_hint, without.fingerprint) == ("", "", "")


def test_several_credentials_of_one_provider_and_scope_form_a_pool(user: User) -> None:
    first, _ = provider_credential_set(
        provider="generic", name="vllm", endpoint_url="http://vllm:8000"
    )
    provider_credential_set(provider="generic", name="tgi", endpoint_url="http://tgi:8080")
    second, created = provider_credential_set(
        provider="generic", name="vllm", endpoint_url="http://vllm2:8000", add=True
    )
    assert created and second.pk != first.pk
    assert ProviderCredential.objects.filter(name="vllm", user=None).count() == 2
    # Without ``add``, which member to replace would be a guess: refused, naming the pool.
    with pytest.raises(AccountsError, match="pool of 2"):
        provider_credential_set(provider="generic", name="vllm", endpoint_url="http://x:1")


# --- Where a stored secret is sent ------------------------------------------------------------


@pytest.fixture
def openai_credential() -> ProviderCredential:
    credential, _ = provider_credential_set(
        provider="openai", secret="sk-openai-stored-0001", endpoint_url="https://api.openai.com"
    )
    return credential


def test_changing_the_endpoint_needs_the_secret_again(
    openai_credential: ProviderCredential,
) -> None:
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    credential.endpoint_url = "https://collector.evil.example"
    with pytest.raises(CredentialInvalid, match="enter the secret again") as refused:
        provider_credential_save(credential=credential, secret=None)
    assert set(refused.value.errors) == {"secret"}
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert stored.endpoint_url == "https://api.openai.com"

    provider_credential_save(credential=credential, secret="sk-openai-retyped-0002")
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert stored.endpoint_url == "https://collector.evil.example"
    assert decrypt_secret(stored.secret_ciphertext) == "sk-openai-retyped-0002"


def test_changing_the_provider_needs_the_secret_again(
    openai_credential: ProviderCredential,
) -> None:
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    credential.provider = "gemini"
    with pytest.raises(CredentialInvalid, match="Changing the provider"):
        provider_credential_save(credential=credential, secret=None)


def test_the_redirect_permission_changes_the_endpoint_without_the_secret(
    openai_credential: ProviderCredential,
) -> None:
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    credential.endpoint_url = "https://openai-proxy.internal.example"
    provider_credential_save(credential=credential, secret=None, may_redirect=True)
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert stored.endpoint_url == "https://openai-proxy.internal.example"
    assert decrypt_secret(stored.secret_ciphertext) == "sk-openai-stored-0001"


def test_other_edits_keep_the_stored_secret(openai_credential: ProviderCredential) -> None:
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    credential.label = "renamed"
    provider_credential_save(credential=credential, secret=None)
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert (stored.label, decrypt_secret(stored.secret_ciphertext)) == (
        "renamed",
        "sk-openai-stored-0001",
    )


def test_a_credential_moved_to_ollama_loses_its_secret(
    openai_credential: ProviderCredential,
) -> None:
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    credential.provider = "ollama"
    credential.endpoint_url = ""
    provider_credential_save(credential=credential, secret=None)
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert (stored.secret_ciphertext, stored.secret_hint) == ("", "")


# --- The admin --------------------------------------------------------------------------------


def admin_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "provider": "openai",
        "name": "",
        "user": "",
        "access_key": "",
        "label": "",
        "region": "",
        "api_mode": "",
        "endpoint_url": "",
        "fallback_model": "",
        "secret": "",
    }
    form.update(changes)
    return form


@pytest.fixture
def staff_client(client: Client) -> Client:
    """A staff member who may change credentials, but is no superuser."""
    staff = User.objects.create_user(email="staff@example.com", password="pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=["view_providercredential", "change_providercredential"],
        )
    )
    client.force_login(staff)
    return client


def test_a_staff_member_cannot_redirect_a_stored_secret(
    staff_client: Client, openai_credential: ProviderCredential
) -> None:
    url = reverse("admin:accounts_providercredential_change", args=[openai_credential.pk])
    response = staff_client.post(
        url, admin_form(endpoint_url="https://collector.evil.example", label="x")
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "enter the secret again" in form.errors["secret"][0]
    openai_credential.refresh_from_db()
    assert openai_credential.endpoint_url == "https://api.openai.com"

    # With the secret entered again, the change is theirs to make.
    response = staff_client.post(
        url,
        admin_form(endpoint_url="https://collector.evil.example", secret="sk-openai-new-0003"),
    )
    assert response.status_code == 302
    openai_credential.refresh_from_db()
    assert openai_credential.endpoint_url == "https://collector.evil.example"
    assert decrypt_secret(openai_credential.secret_ciphertext) == "sk-openai-new-0003"


def test_a_superuser_may_redirect_without_the_secret(
    admin_client: Client, openai_credential: ProviderCredential
) -> None:
    url = reverse("admin:accounts_providercredential_change", args=[openai_credential.pk])
    response = admin_client.post(url, admin_form(endpoint_url="https://openai.internal.example"))
    assert response.status_code == 302
    openai_credential.refresh_from_db()
    assert openai_credential.endpoint_url == "https://openai.internal.example"
    assert decrypt_secret(openai_credential.secret_ciphertext) == "sk-openai-stored-0001"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"provider": "generic", "endpoint_url": "http://vllm:8000"}, "name", "needs a name"),
        ({"provider": "generic", "name": "vllm"}, "endpoint_url", "needs its base URL"),
        ({"secret": SECRET, "region": "us-east-1"}, "region", "Only Bedrock"),
        ({"provider": "ollama", "secret": SECRET}, "secret", "Ollama takes no secret"),
        ({"provider": "bedrock", "secret": SECRET, "region": "x@evil.example/#"}, "region",
         "not an AWS region"),
        ({"secret": SECRET, "endpoint_url": "https://u:p@evil.example"}, "endpoint_url",
         "no user name or password"),
        ({}, "secret", "OpenAI needs a secret."),
    ],
)  # fmt: skip
def test_the_admin_form_shows_each_error_on_its_field(
    admin_client: Client, changes: dict[str, Any], field: str, message: str
) -> None:
    response = admin_client.post(ADD, admin_form(**changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field]), errors
    assert not ProviderCredential.objects.exists()


def test_the_admin_adds_generic_and_ollama_credentials(admin_client: Client) -> None:
    response = admin_client.post(
        ADD,
        admin_form(provider="generic", name="vllm", endpoint_url="http://vllm:8000/", label="gpu"),
    )
    assert response.status_code == 302
    response = admin_client.post(ADD, admin_form(provider="ollama"))
    assert response.status_code == 302
    vllm = ProviderCredential.objects.get(provider="generic")
    assert (vllm.name, vllm.endpoint_url, vllm.secret_ciphertext) == (
        "vllm",
        "http://vllm:8000/",
        "",
    )
    assert ProviderCredential.objects.get(provider="ollama").secret_ciphertext == ""

    # A second server under the same name joins its pool (requests go to either).
    response = admin_client.post(
        ADD, admin_form(provider="generic", name="vllm", endpoint_url="http://other:8000")
    )
    assert response.status_code == 302
    assert ProviderCredential.objects.filter(name="vllm").count() == 2

    listing = admin_client.get(reverse("admin:accounts_providercredential_changelist"))
    html = listing.content.decode()
    assert "http://vllm:8000/" in html
    assert ">vllm<" in html


def test_the_add_form_shows_no_record_fields(admin_client: Client) -> None:
    response = admin_client.get(ADD)
    assert response.status_code == 200
    html = response.content.decode()
    for field in ("created_at", "updated_at", "decrypts", "fingerprint"):
        assert f"field-{field}" not in html, field
    assert "field-name" in html
    assert "field-endpoint_url" in html


# --- The command ------------------------------------------------------------------------------


def run(*args: str, stdin: str = "") -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("set_provider_credential", *args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return out.getvalue().splitlines(), err.getvalue()


def test_the_command_sets_credentials_of_every_provider(user: User) -> None:
    run("openai", "--secret-stdin", stdin="sk-openai-from-stdin-0001\n")
    run(
        "gemini",
        "--secret-stdin",
        "--endpoint",
        "https://gemini.internal",
        "--user",
        user.email,
        stdin="gemini-key-0000002",
    )
    lines, err = run("generic", "--name", "vllm", "--endpoint", "http://vllm:8000")
    assert lines[0].startswith("Created Generic OpenAI-compatible server vllm (global)")
    assert "no secret" in err
    run(
        "generic",
        "--name",
        "groq",
        "--endpoint",
        "https://api.groq.com/openai",
        "--secret-stdin",
        stdin="gsk-from-stdin-0003",
    )
    run("ollama", "--endpoint", "http://ollama:11434")
    stored = {
        credential.provider_key: credential for credential in ProviderCredential.objects.all()
    }
    assert set(stored) == {"openai", "gemini", "vllm", "groq", "ollama"}
    assert decrypt_secret(stored["openai"].secret_ciphertext) == "sk-openai-from-stdin-0001"
    assert (stored["gemini"].user, stored["gemini"].endpoint_url) == (
        user,
        "https://gemini.internal",
    )
    assert decrypt_secret(stored["groq"].secret_ciphertext) == "gsk-from-stdin-0003"
    assert stored["ollama"].secret_ciphertext == ""
    assert stored["ollama"].endpoint_url == "http://ollama:11434"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["openai"], "", "Pass the secret on stdin with --secret-stdin"),
        (["ollama", "--secret-stdin"], "x", "Ollama takes no secret: drop --secret-stdin"),
        (["generic", "--endpoint", "http://vllm:8000"], "", "--name: A generic server needs"),
        (["generic", "--name", "vllm"], "", "--endpoint: A generic server needs its base URL"),
        (["generic", "--name", "Bad", "--endpoint", "http://x:1"], "", "--name: 'Bad' is not"),
        (["openai", "--secret-stdin", "--region", "us-east-1"], SECRET, "--region: Only Bedrock"),
        (["openai", "--secret-stdin", "--mode", "converse"], SECRET, "--mode: Only Bedrock"),
        (["openai", "--secret-stdin", "--name", "x"], SECRET, "--name: Only generic servers"),
        (
            ["bedrock", "--secret-stdin", "--region", "x@evil.example/#"],
            SECRET,
            "--region: 'x@evil.example/#' is not an AWS region",
        ),
        (
            ["gemini", "--secret-stdin", "--endpoint", "https://x.example/#"],
            SECRET,
            "--endpoint: 'https://x.example/#': an endpoint URL takes no query",
        ),
    ],
)
def test_the_command_names_what_is_wrong(args: list[str], stdin: str, message: str) -> None:
    with pytest.raises(CommandError) as refused:
        run(*args, stdin=stdin)
    assert message in str(refused.value)
    assert not ProviderCredential.objects.exists()


def test_the_form_page_loads_the_script_that_shows_each_providers_fields(
    admin_client: Client,
) -> None:
    html = admin_client.get(ADD).content.decode()
    assert "accounts/credential_form.js" in html
    script = (Path(__file__).parents[1] / "static/accounts/credential_form.js").read_text()
    # The script knows every provider, and the rows it looks for are the form's.
    for provider in Provider.values:
        assert f"{provider}: [" in script, provider
    for field in ("name", "secret", "endpoint_url", "region", "api_mode", "fallback_model"):
        assert f"field-{field}" in html, field


def test_encryption_key_rotation_skips_credentials_without_secret(fernet_keys: list[str]) -> None:
    provider_credential_set(provider="ollama")
    provider_credential_set(provider="openai", secret="sk-openai-rotated-0001")
    report = encryption_keys_rotate()
    assert (report.rotated, report.failed) == (1, [])
    assert ProviderCredential.objects.get(provider="ollama").secret_ciphertext == ""


@pytest.mark.django_db
def test_a_disabled_credential_is_skipped_for_the_next_more_general_one() -> None:
    from accounts.models import User
    from accounts.selectors import credentials_for_key
    from accounts.services import (
        access_key_create,
        provider_credential_set,
        provider_credential_set_enabled,
    )

    user = User.objects.create_user(email="pool@example.com")
    key, _ = access_key_create(user=user, label="k")
    general, _ = provider_credential_set(provider="openai", secret="sk-global-0000000000")
    specific, _ = provider_credential_set(
        provider="openai", secret="sk-user-00000000000", user=user
    )
    chosen = credentials_for_key(user_id=user.pk, access_key_id=key.pk)
    assert chosen["openai"].pk == specific.pk
    assert provider_credential_set_enabled(credential=specific, enabled=False) is True
    assert provider_credential_set_enabled(credential=specific, enabled=False) is False
    assert credentials_for_key(user_id=user.pk, access_key_id=key.pk)["openai"].pk == general.pk
    provider_credential_set_enabled(credential=general, enabled=False)
    assert "openai" not in credentials_for_key(user_id=user.pk, access_key_id=key.pk)
