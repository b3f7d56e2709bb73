"""The accounts admin through Django's test client: new keys shown exactly once and stored
nowhere, actions and soft delete through the services, credentials whose secret is never
rendered, lists that render without N+1 queries (and with an undecryptable credential)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.admin import MAX_KEYS_PER_ACTION
from accounts.crypto import decrypt_secret
from accounts.keycache import invalidate_key_metadata
from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import access_key_revoke, provider_credential_set
from accounts.tests.helpers import verified_key

pytestmark = pytest.mark.django_db

MakeKey = Callable[..., tuple[AccessKey, str]]
MakeCredential = Callable[..., ProviderCredential]
Scan = Callable[[str], list[str]]

KEY_PATTERN = re.compile(r'<code class="gateway-new-key">(gw_[a-z0-9]+_[A-Za-z0-9_-]+)</code>')

USERS = reverse("admin:accounts_user_changelist")
KEYS = reverse("admin:accounts_accesskey_changelist")
CREDENTIALS = reverse("admin:accounts_providercredential_changelist")


def shown_keys(html: str) -> list[str]:
    return KEY_PATTERN.findall(html)


def assert_shown_once_and_never_again(
    client: Client, response: Any, plaintext: str, scan: Scan, *later_urls: str
) -> None:
    """The page after the action shows the key once; nothing after it, nor the database."""
    assert response.content.decode().count(plaintext) == 1
    secret_part = plaintext.split("_", 2)[2]
    for url in (response.request["PATH_INFO"], *later_urls):
        page = client.get(url)
        assert page.status_code == 200
        assert secret_part not in page.content.decode(), url
    assert scan(plaintext) == []
    assert scan(secret_part) == []


def listed(client: Client, url: str, **params: str) -> set[Any]:
    """The rows a changelist shows."""
    response = client.get(url, params)
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


def run_action(client: Client, url: str, action: str, *objects: Any) -> Any:
    return client.post(
        url,
        {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects]},
        follow=True,
    )


# --- Users ------------------------------------------------------------------------------------


def test_user_pages_render_by_email_with_keys_inline(
    admin_client: Client, make_key: MakeKey, user: User
) -> None:
    key, plaintext = make_key(user=user, label="laptop")
    deleted, _ = make_key(user=user, label="gone")
    deleted.deleted_at = timezone.now()
    deleted.save(update_fields=["deleted_at"])

    listing = admin_client.get(USERS).content.decode()
    assert "alice@example.com" in listing
    assert "username" not in listing

    page = admin_client.get(reverse("admin:accounts_user_change", args=[user.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert key.prefix in html
    assert "laptop" in html
    assert deleted.prefix not in html
    assert plaintext.split("_", 2)[2] not in html
    assert key.key_hash not in html
    assert f"{reverse('admin:accounts_accesskey_add')}?user={user.pk}" in html
    # The inline is read-only: no add row, no delete box.
    assert "access_keys-0-DELETE" not in html
    assert 'name="access_keys-MAX_NUM_FORMS" value="0"' in html

    assert admin_client.get(reverse("admin:accounts_user_add")).status_code == 200


def test_user_add_by_email_without_password(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "carol@Example.com",
            "usable_password": "false",
            "password1": "",
            "password2": "",
        },
    )
    assert response.status_code == 302
    carol = User.objects.get(email="carol@example.com")
    assert not carol.has_usable_password()
    assert not carol.is_staff


def test_user_add_refuses_an_email_taken_in_another_case(admin_client: Client, user: User) -> None:
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {"email": "ALICE@example.com", "usable_password": "false"},
    )
    assert response.status_code == 200
    assert "A user with this email already exists." in response.content.decode()
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_user_change_saves_with_the_read_only_inline(
    admin_client: Client, make_key: MakeKey, user: User
) -> None:
    key, _ = make_key(user=user)
    response = admin_client.post(
        reverse("admin:accounts_user_change", args=[user.pk]),
        {
            "email": "alice@example.com",
            "full_name": "Alice Liddell",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "access_keys-TOTAL_FORMS": "1",
            "access_keys-INITIAL_FORMS": "1",
            "access_keys-MIN_NUM_FORMS": "0",
            "access_keys-MAX_NUM_FORMS": "1000",
            "access_keys-0-id": str(key.pk),
            "access_keys-0-user": str(user.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user.refresh_from_db()
    assert user.full_name == "Alice Liddell"
    key.refresh_from_db()
    assert key.status == AccessKey.Status.ACTIVE


def test_create_access_key_action_shows_the_key_once(
    admin_client: Client, make_user: Callable[..., User], db_scan: Scan
) -> None:
    bob, carol = make_user("bob@example.com"), make_user("carol@example.com")

    response = run_action(admin_client, USERS, "create_access_key", bob, carol)

    assert response.status_code == 200
    plaintexts = shown_keys(response.content.decode())
    assert len(plaintexts) == 2
    owners = {verified_key(plaintext=plaintext).user for plaintext in plaintexts}  # type: ignore[union-attr]
    assert owners == {bob, carol}
    for plaintext in plaintexts:
        assert_shown_once_and_never_again(
            admin_client,
            response,
            plaintext,
            db_scan,
            reverse("admin:accounts_user_change", args=[bob.pk]),
            KEYS,
        )
    assert LogEntry.objects.filter(object_id=str(bob.pk)).exists()


def test_bulk_key_actions_stop_at_what_one_page_can_show(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    users = [make_user() for _ in range(MAX_KEYS_PER_ACTION + 1)]
    response = run_action(admin_client, USERS, "create_access_key", *users)
    assert f"Select at most {MAX_KEYS_PER_ACTION}" in response.content.decode()
    assert not AccessKey.objects.exists()


def test_the_most_keys_one_action_makes_all_fit_in_the_message_cookie(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    # Long addresses make long messages; every key must still reach the page.
    users = [make_user(f"{'x' * 60}{n}@{'long-domain-' * 5}example.com") for n in range(5)]
    assert len(users) == MAX_KEYS_PER_ACTION
    response = run_action(admin_client, USERS, "create_access_key", *users)
    plaintexts = shown_keys(response.content.decode())
    assert len(plaintexts) == MAX_KEYS_PER_ACTION
    assert all(verified_key(plaintext=plaintext) for plaintext in plaintexts)


# --- Access keys ------------------------------------------------------------------------------


def test_add_form_creates_through_the_service_and_shows_the_key_once(
    admin_client: Client, user: User, db_scan: Scan, django_capture_on_commit_callbacks: Any
) -> None:
    add_url = reverse("admin:accounts_accesskey_add")
    form = admin_client.get(f"{add_url}?user={user.pk}").content.decode()
    assert "shown once" in form

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            add_url,
            {
                "user": user.pk,
                "label": "ci",
                "expires_at_0": "2099-01-01",
                "expires_at_1": "12:00:00",
            },
            follow=True,
        )

    assert invalidate_key_metadata in callbacks
    assert response.status_code == 200
    [plaintext] = shown_keys(response.content.decode())
    key = verified_key(plaintext=plaintext)
    assert key is not None
    assert (key.user, key.label) == (user, "ci")
    assert key.expires_at is not None
    assert key.expires_at.year == 2099
    assert AccessKey.objects.count() == 1
    assert_shown_once_and_never_again(
        admin_client,
        response,
        plaintext,
        db_scan,
        reverse("admin:accounts_accesskey_change", args=[key.pk]),
        reverse("admin:accounts_accesskey_history", args=[key.pk]),
    )


def test_add_form_refuses_a_past_expiry(admin_client: Client, user: User) -> None:
    response = admin_client.post(
        reverse("admin:accounts_accesskey_add"),
        {"user": user.pk, "label": "", "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    )
    assert response.status_code == 200
    assert "The expiry must be in the future." in response.content.decode()
    assert not AccessKey.objects.exists()


def test_change_page_shows_ids_and_a_truncated_hash_and_edits_through_the_service(
    admin_client: Client, make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    key, plaintext = make_key(label="old")
    url = reverse("admin:accounts_accesskey_change", args=[key.pk])
    html = admin_client.get(url).content.decode()
    assert key.prefix in html
    assert key.key_hash[:12] in html
    assert key.key_hash not in html
    assert plaintext.split("_", 2)[2] not in html
    # Status and ownership change only through the actions.
    assert 'name="status"' not in html
    assert 'name="user"' not in html

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url, {"label": "new", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 302
    assert invalidate_key_metadata in callbacks
    key.refresh_from_db()
    assert key.label == "new"
    assert key.expires_at is None
    assert verified_key(plaintext=plaintext) == key


def test_rotate_action_shows_the_new_key_once_and_keeps_the_old_in_grace(
    admin_client: Client, make_key: MakeKey, db_scan: Scan
) -> None:
    old, old_plaintext = make_key(label="laptop")

    response = run_action(admin_client, KEYS, "rotate_keys", old)

    [new_plaintext] = shown_keys(response.content.decode())
    new = verified_key(plaintext=new_plaintext)
    assert new is not None
    old.refresh_from_db()
    assert old.status == AccessKey.Status.ROTATED
    assert old.replaced_by == new
    assert verified_key(plaintext=old_plaintext) == old
    assert f"The old key {old.prefix} keeps working until" in response.content.decode()
    assert_shown_once_and_never_again(
        admin_client,
        response,
        new_plaintext,
        db_scan,
        reverse("admin:accounts_accesskey_change", args=[new.pk]),
        reverse("admin:accounts_accesskey_change", args=[old.pk]),
    )


def test_rotate_action_skips_keys_that_cannot_rotate(
    admin_client: Client, make_key: MakeKey
) -> None:
    revoked, _ = make_key()
    access_key_revoke(access_key=revoked)
    active, _ = make_key()

    response = run_action(admin_client, KEYS, "rotate_keys", revoked, active)

    html = response.content.decode()
    assert f"Key {revoked.prefix} is revoked; only active keys rotate." in html
    assert len(shown_keys(html)) == 1
    assert AccessKey.objects.count() == 3


def test_revoke_action(admin_client: Client, make_key: MakeKey) -> None:
    key, plaintext = make_key()
    response = run_action(admin_client, KEYS, "revoke_keys", key)
    assert f"Revoked {key.prefix}." in response.content.decode()
    assert verified_key(plaintext=plaintext) is None
    response = run_action(admin_client, KEYS, "revoke_keys", key)
    assert "already revoked" in response.content.decode()


def test_delete_is_a_soft_delete(
    admin_client: Client,
    make_key: MakeKey,
    make_credential: MakeCredential,
    django_capture_on_commit_callbacks: Any,
) -> None:
    one, one_plaintext = make_key()
    two, _ = make_key()
    three, _ = make_key()
    make_credential(access_key=one)
    confirm = admin_client.get(reverse("admin:accounts_accesskey_delete", args=[one.pk]))
    assert confirm.status_code == 200
    assert confirm.context["deleted_objects"] == [str(one)]
    assert dict(confirm.context["model_count"]) == {"access keys": 1}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            reverse("admin:accounts_accesskey_delete", args=[one.pk]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert invalidate_key_metadata in callbacks
    admin_client.post(
        KEYS, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [two.pk], "post": "yes"}
    )

    assert AccessKey.objects.count() == 3
    assert ProviderCredential.objects.filter(access_key=one).exists()
    for key in (one, two):
        key.refresh_from_db()
        assert key.deleted_at is not None
        assert key.status == AccessKey.Status.REVOKED
    assert verified_key(plaintext=one_plaintext) is None
    # Deleted keys leave the default list but stay findable.
    assert listed(admin_client, KEYS) == {three}
    assert listed(admin_client, KEYS, deleted="no") == {three}
    assert listed(admin_client, KEYS, deleted="yes") == {one, two}
    assert listed(admin_client, KEYS, deleted="all") == {one, two, three}


def test_key_list_filters_and_search(
    admin_client: Client, make_key: MakeKey, make_user: Callable[..., User]
) -> None:
    now = timezone.now()
    never, _ = make_key(user=make_user("never@example.com"), label="desktop")
    soon, _ = make_key(user=make_user("soon@example.com"), expires_at=now + timedelta(days=2))
    later, _ = make_key(expires_at=now + timedelta(days=30))
    expired, _ = make_key(expires_at=now + timedelta(days=1))
    AccessKey.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(days=1))
    revoked, _ = make_key()
    access_key_revoke(access_key=revoked)

    assert listed(admin_client, KEYS) == {never, soon, later, expired, revoked}
    assert listed(admin_client, KEYS, expiry="never") == {never, revoked}
    assert listed(admin_client, KEYS, expiry="expired") == {expired}
    assert listed(admin_client, KEYS, expiry="week") == {soon}
    assert listed(admin_client, KEYS, expiry="later") == {later}
    assert listed(admin_client, KEYS, status__exact="revoked") == {revoked}
    assert listed(admin_client, KEYS, q=soon.prefix) == {soon}
    assert listed(admin_client, KEYS, q="soon@example") == {soon}
    assert listed(admin_client, KEYS, q="desktop") == {never}


def test_lists_make_the_same_number_of_queries_whatever_their_length(
    admin_client: Client, make_key: MakeKey, make_credential: MakeCredential
) -> None:
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    key, _ = make_key()
    make_credential(access_key=key)
    make_credential(provider="anthropic", secret="sk-ant-0000000001")
    counts = {url: queries(url) for url in (USERS, KEYS, CREDENTIALS)}
    for _ in range(6):
        more, _ = make_key()
        make_credential(access_key=more)
        make_credential(user=more.user)
    assert {url: queries(url) for url in counts} == counts


def test_pages_need_a_staff_login(client: Client, make_key: MakeKey) -> None:
    make_key()
    for url in (USERS, KEYS, CREDENTIALS):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]


# --- Provider credentials ---------------------------------------------------------------------


def credential_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "provider": "bedrock",
        "user": "",
        "access_key": "",
        "label": "team",
        "region": "us-east-1",
        "api_mode": "converse",
        "endpoint_url": "",
        "fallback_model": "",
        "secret": "",
    }
    form.update(changes)
    return form


def test_credential_add_encrypts_and_never_renders_the_secret(
    admin_client: Client,
    db_scan: Scan,
    django_capture_on_commit_callbacks: Any,
) -> None:
    secret = "ABSKsecret-bedrock-key-9876"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            reverse("admin:accounts_providercredential_add"),
            credential_form(secret=secret),
            follow=True,
        )
    assert invalidate_key_metadata in callbacks
    assert response.status_code == 200
    credential = ProviderCredential.objects.get()
    assert decrypt_secret(credential.secret_ciphertext) == secret
    assert (credential.api_mode, credential.region, credential.label) == (
        "converse",
        "us-east-1",
        "team",
    )
    assert db_scan(secret) == []

    pages = [
        response.content.decode(),
        admin_client.get(CREDENTIALS).content.decode(),
        admin_client.get(
            reverse("admin:accounts_providercredential_change", args=[credential.pk])
        ).content.decode(),
        admin_client.get(
            reverse("admin:accounts_providercredential_history", args=[credential.pk])
        ).content.decode(),
    ]
    for html in pages:
        assert secret not in html
        assert credential.secret_ciphertext.removeprefix("fernet:") not in html
    assert "…9876" in pages[1]
    assert "…9876" in pages[2]
    [secret_input] = re.findall(r"<input[^>]*name=\"secret\"[^>]*>", pages[2])
    assert 'type="password"' in secret_input
    assert "value=" not in secret_input


def test_credential_add_requires_a_secret(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:accounts_providercredential_add"), credential_form(secret="   ")
    )
    assert response.status_code == 200
    assert "AWS Bedrock needs a secret." in response.content.decode()
    assert not ProviderCredential.objects.exists()


def test_credential_change_keeps_or_replaces_the_secret(
    admin_client: Client, make_credential: MakeCredential
) -> None:
    credential = make_credential(secret="original-secret-1111")
    url = reverse("admin:accounts_providercredential_change", args=[credential.pk])

    response = admin_client.post(url, credential_form(label="renamed", secret=""))
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.label == "renamed"
    assert decrypt_secret(credential.secret_ciphertext) == "original-secret-1111"

    response = admin_client.post(url, credential_form(secret="  replaced-secret-2222  "))
    assert response.status_code == 302
    credential.refresh_from_db()
    assert decrypt_secret(credential.secret_ciphertext) == "replaced-secret-2222"
    assert credential.secret_hint == "2222"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoint_url": "ftp://example.com"}, "is not an http(s) URL"),
        ({"endpoint_url": "not a url"}, "is not an http(s) URL"),
        ({"secret": "two\nlines-of-secret"}, "line breaks"),
        ({"provider": "azure"}, "Select a valid choice."),
        ({"api_mode": "stream"}, "Select a valid choice."),
    ],
)
def test_credential_form_refuses_bad_input(
    admin_client: Client, changes: dict[str, Any], message: str
) -> None:
    form = credential_form(secret="a-good-secret-1234")
    form.update(changes)
    response = admin_client.post(reverse("admin:accounts_providercredential_add"), form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ProviderCredential.objects.exists()


def test_credential_form_refuses_two_scopes_and_joins_a_taken_scopes_pool(
    admin_client: Client, make_key: MakeKey, make_credential: MakeCredential, user: User
) -> None:
    key, _ = make_key(user=user)
    add_url = reverse("admin:accounts_providercredential_add")
    response = admin_client.post(
        add_url, credential_form(secret="a-good-secret-1234", user=user.pk, access_key=key.pk)
    )
    assert "not both" in response.content.decode()

    make_credential(user=user)
    response = admin_client.post(
        add_url, credential_form(secret="a-good-secret-1234", user=user.pk)
    )
    assert response.status_code == 302  # a second member of that scope's pool
    assert ProviderCredential.objects.filter(user=user).count() == 2


def test_credential_list_renders_an_undecryptable_row(
    admin_client: Client,
    settings: Any,
    fernet_keys: list[str],
    make_credential: MakeCredential,
    user: User,
) -> None:
    readable = make_credential(secret="readable-secret-0001")
    lost = make_credential(user=user, secret="lost-secret-0002")
    # Encrypted under a key that is no longer configured.
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    readable.secret_ciphertext = (
        "fernet:"
        + Fernet(settings.GATEWAY_ENCRYPTION_KEYS[0].encode())
        .encrypt(b"readable-secret-0001")
        .decode()
    )
    readable.save(update_fields=["secret_ciphertext"])
    ProviderCredential.objects.create(provider="anthropic", secret_ciphertext="garbage")

    response = admin_client.get(CREDENTIALS)

    html = response.content.decode()
    assert response.status_code == 200
    # Icons: "decrypts" (one yes, two no) and "enabled" (yes for all three).
    assert html.count('alt="False"') == 2
    assert html.count('alt="True"') == 1 + 3
    assert "user alice@example.com" in html
    change = admin_client.get(reverse("admin:accounts_providercredential_change", args=[lost.pk]))
    assert change.status_code == 200


def test_credential_delete_goes_through_the_service(
    admin_client: Client, make_credential: MakeCredential, django_capture_on_commit_callbacks: Any
) -> None:
    one = make_credential()
    two = make_credential(provider="anthropic", secret="sk-ant-0000000001")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(
            reverse("admin:accounts_providercredential_delete", args=[one.pk]), {"post": "yes"}
        )
    assert invalidate_key_metadata in callbacks
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(
            CREDENTIALS,
            {"action": "delete_selected", ACTION_CHECKBOX_NAME: [two.pk], "post": "yes"},
        )
    assert invalidate_key_metadata in callbacks
    assert not ProviderCredential.objects.exists()


def test_credential_list_filters_by_scope(
    admin_client: Client, make_key: MakeKey, make_credential: MakeCredential, user: User
) -> None:
    key, _ = make_key(user=user)
    make_credential(label="the-global-one")
    make_credential(user=user, label="the-user-one")
    make_credential(access_key=key, label="the-key-one")

    def labels(**params: str) -> set[str]:
        return {credential.label for credential in listed(admin_client, CREDENTIALS, **params)}

    assert labels() == {"the-global-one", "the-user-one", "the-key-one"}
    assert labels(scope="global") == {"the-global-one"}
    assert labels(scope="user") == {"the-user-one"}
    assert labels(scope="key") == {"the-key-one"}
    assert labels(q=key.prefix) == {"the-key-one"}
    assert labels(q="alice@example") == {"the-user-one"}
    assert labels(provider__exact="anthropic") == set()


def test_the_plaintext_scan_finds_what_is_stored(user: User, db_scan: Scan) -> None:
    # Guards the "stored nowhere" assertions above: the scan does see every table.
    assert "accounts_user.email" in db_scan("alice@example.com")
    assert db_scan("no-such-value-anywhere") == []


def test_user_autocomplete_serves_the_key_form(admin_client: Client, user: User) -> None:
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "accounts", "model_name": "accesskey", "field_name": "user", "term": "ali"},
    )
    assert response.status_code == 200
    assert [item["text"] for item in response.json()["results"]] == ["alice@example.com"]


def test_users_without_keys_can_be_deleted_and_key_holders_cannot(
    admin_client: Client, make_key: MakeKey, make_user: Callable[..., User]
) -> None:
    keyless = make_user("keyless@example.com")
    holder = make_user("holder@example.com")
    make_key(user=holder)
    admin_client.post(
        USERS, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [keyless.pk], "post": "yes"}
    )
    assert not User.objects.filter(pk=keyless.pk).exists()
    response = admin_client.post(
        reverse("admin:accounts_user_delete", args=[holder.pk]), {"post": "yes"}
    )
    assert response.status_code == 200
    assert "would require deleting the following protected related objects" in (
        response.content.decode()
    )
    assert User.objects.filter(pk=holder.pk).exists()


def test_credentials_of_one_scope_form_a_pool_and_weights_are_checked(
    admin_client: Client,
) -> None:
    url = reverse("admin:accounts_providercredential_add")
    form = credential_form(provider="openai", region="", api_mode="", label="a")
    alone = admin_client.post(url, {**form, "secret": "sk-openai-0001", "weight": "0"})
    assert alone.status_code == 200
    assert "no other member" in alone.content.decode()
    assert not ProviderCredential.objects.exists()
    for n in (1, 2):
        created = admin_client.post(url, {**form, "secret": f"sk-openai-000{n}", "rpm_limit": "60"})
        assert created.status_code == 302, created.content
    assert ProviderCredential.objects.filter(provider="openai", rpm_limit=60).count() == 2
    standby = admin_client.post(url, {**form, "secret": "sk-openai-0003", "weight": "0"})
    assert standby.status_code == 302
    bad = admin_client.post(url, {**form, "secret": "sk-openai-0004", "max_concurrency": "0"})
    assert bad.status_code == 200 and "max_concurrency" in bad.context["adminform"].form.errors


def test_credential_health_page_shows_cooldowns_and_disable_reasons(
    admin_client: Client,
) -> None:
    import asyncio
    import time

    from proxy.pools.state import pool_state

    ready, _ = provider_credential_set(provider="openai", secret="sk-openai-ready-0001")
    cooling, _ = provider_credential_set(provider="openai", secret="sk-openai-cool-0002", add=True)
    refused, _ = provider_credential_set(provider="openai", secret="sk-openai-gone-0003", add=True)
    ProviderCredential.objects.filter(pk=refused.pk).update(
        enabled=False, disabled_reason="key refused: 401 invalid_api_key: Incorrect API key"
    )

    async def cool_down() -> None:
        # In an event loop, as in the gateway: published to Redis when there is one.
        pool_state.extend_cooldown(cooling.pk, until=time.time() + 120, reason="openai_429")
        await pool_state.wait_idle()

    asyncio.run(cool_down())
    changelist = admin_client.get(reverse("admin:accounts_providercredential_changelist"))
    health_url = reverse("admin:accounts_providercredential_health")
    assert health_url in changelist.content.decode()
    page = admin_client.get(health_url).content.decode()
    assert "openai · global · Round robin" in page
    assert "key refused: 401 invalid_api_key" in page
    assert "cooling down" in page and "openai_429" in page
    assert page.count("ready") >= 1
    assert "sk-openai" not in page  # fingerprints only
