"""The accounts management commands: the last-line contract of the key commands (in process and
through a real ``manage.py``), scoping and replacing credentials, and every refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.crypto import decrypt_secret
from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import access_key_revoke
from accounts.tests.helpers import verified_key

pytestmark = pytest.mark.django_db

MakeKey = Callable[..., tuple[AccessKey, str]]
Scan = Callable[[str], list[str]]


def run(*args: str, stdin: str | None = None, **options: Any) -> tuple[list[str], str]:
    """Run a command; returns its stdout lines and its stderr."""
    out, err = StringIO(), StringIO()
    if stdin is not None:
        options["stdin"] = StringIO(stdin)
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue().splitlines(), err.getvalue()


# --- create_access_key ------------------------------------------------------------------------


def test_create_prints_the_key_alone_on_the_last_line(user: User, db_scan: Scan) -> None:
    lines, _ = run("create_access_key", "Alice@Example.com", "--label", "laptop")

    *info, plaintext = lines
    key = verified_key(plaintext=plaintext)
    assert key is not None
    assert (key.user, key.label, key.expires_at) == (user, "laptop", None)
    assert plaintext == plaintext.strip()
    assert any(key.prefix in line for line in info)
    assert all(plaintext not in line for line in info)
    assert db_scan(plaintext) == []


def test_create_with_expiry(user: User) -> None:
    lines, _ = run("create_access_key", user.email, "--expires-in-days", "30")
    key = verified_key(plaintext=lines[-1])
    assert key is not None
    assert key.expires_at is not None
    assert timedelta(days=29, hours=23) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert "expires" in lines[-3]


def test_create_user_on_request() -> None:
    lines, _ = run("create_access_key", "new@example.com", "--create-user")
    assert lines[0] == "Created user new@example.com."
    key = verified_key(plaintext=lines[-1])
    assert key is not None
    assert key.user.email == "new@example.com"
    assert not key.user.has_usable_password()
    # A second run finds the user instead of creating another.
    lines, _ = run("create_access_key", "new@example.com", "--create-user")
    assert not lines[0].startswith("Created user")
    assert User.objects.count() == 1
    assert AccessKey.objects.count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody@example.com"], r"No user with email 'nobody@example\.com'"),
        (["not-an-email", "--create-user"], "'not-an-email' is not an email address"),
        (["alice@example.com", "--expires-in-days", "0"], "positive number of days, not 0"),
        (["alice@example.com", "--expires-in-days", "-3"], "positive number of days, not -3"),
        (["alice@example.com", "--expires-in-days", "soon"], "invalid int value"),
        (["alice@example.com", "--label", "x" * 101], "label is over 100"),
        ([], "the following arguments are required: email"),
    ],
)
def test_create_refuses_bad_input(user: User, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("create_access_key", *args)
    assert not AccessKey.objects.exists()
    assert User.objects.count() == 1


# --- rotate_access_key / revoke_access_key ----------------------------------------------------


def test_rotate_prints_the_new_key_last_and_keeps_the_old_in_grace(make_key: MakeKey) -> None:
    old, old_plaintext = make_key(label="ci")
    lines, _ = run("rotate_access_key", old.prefix)
    new = verified_key(plaintext=lines[-1])
    assert new is not None
    assert new.pk != old.pk
    assert new.label == "ci"
    old.refresh_from_db()
    assert old.status == AccessKey.Status.ROTATED
    assert old.replaced_by == new
    assert verified_key(plaintext=old_plaintext) == old
    assert f"{old.prefix} keeps working until" in lines[0]


def test_rotate_with_a_chosen_grace(make_key: MakeKey) -> None:
    old, old_plaintext = make_key()
    run("rotate_access_key", old.prefix, "--grace-hours", "0")
    assert verified_key(plaintext=old_plaintext) is None
    other, _ = make_key()
    run("rotate_access_key", other.prefix, "--grace-hours", "1.5")
    other.refresh_from_db()
    assert other.grace_ends_at is not None
    remaining = other.grace_ends_at - timezone.now()
    assert timedelta(hours=1, minutes=29) < remaining <= timedelta(hours=1, minutes=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gw_unknown0"], "No access key with prefix 'gw_unknown0'"),
        (["{prefix}", "--grace-hours", "-1"], "between 0 and 8760, not -1.0"),
        (["{prefix}", "--grace-hours", "nan"], "between 0 and 8760"),
        (["{prefix}", "--grace-hours", "a day"], "invalid float value"),
    ],
)
def test_rotate_refuses_bad_input(make_key: MakeKey, args: list[str], message: str) -> None:
    key, _ = make_key()
    with pytest.raises(CommandError, match=message):
        run("rotate_access_key", *[arg.format(prefix=key.prefix) for arg in args])
    assert AccessKey.objects.count() == 1


def test_rotate_refuses_a_key_that_is_not_active(make_key: MakeKey) -> None:
    key, _ = make_key()
    access_key_revoke(access_key=key)
    with pytest.raises(CommandError, match=f"Key {key.prefix} is revoked"):
        run("rotate_access_key", key.prefix)


def test_revoke(make_key: MakeKey) -> None:
    key, plaintext = make_key()
    lines, _ = run("revoke_access_key", key.prefix)
    assert lines == [f"Revoked {key.prefix} of {key.user.email}."]
    assert verified_key(plaintext=plaintext) is None
    lines, _ = run("revoke_access_key", key.prefix)
    assert lines == [f"{key.prefix} was already revoked."]


def test_revoke_refuses_an_unknown_or_deleted_prefix(make_key: MakeKey) -> None:
    with pytest.raises(CommandError, match="No access key with prefix 'gw_unknown0'"):
        run("revoke_access_key", "gw_unknown0")
    key, _ = make_key()
    AccessKey.objects.filter(pk=key.pk).update(deleted_at=timezone.now())
    with pytest.raises(CommandError, match="No access key with prefix"):
        run("revoke_access_key", key.prefix)


# --- set_provider_credential ------------------------------------------------------------------


def test_set_global_credential_from_stdin(db_scan: Scan) -> None:
    lines, err = run(
        "set_provider_credential",
        "bedrock",
        "--secret-stdin",
        "--region",
        "eu-west-1",
        "--mode",
        "converse",
        "--endpoint",
        "https://bedrock.internal.example",
        "--label",
        "main",
        "--fallback-model",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        stdin="ABSK-bedrock-secret-7777\n",
    )
    credential = ProviderCredential.objects.get()
    assert (credential.user, credential.access_key) == (None, None)
    assert decrypt_secret(credential.secret_ciphertext) == "ABSK-bedrock-secret-7777"
    assert (credential.region, credential.api_mode, credential.label) == (
        "eu-west-1",
        "converse",
        "main",
    )
    assert credential.endpoint_url == "https://bedrock.internal.example"
    assert credential.fallback_model == "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert lines == [
        f"Created AWS Bedrock (global), fingerprint …7777 (credential #{credential.pk})."
    ]
    assert err == ""
    assert db_scan("ABSK-bedrock-secret") == []


def test_set_replaces_the_credential_of_the_same_scope(user: User) -> None:
    run("set_provider_credential", "anthropic", "--secret-stdin", stdin="sk-ant-first-0001")
    lines, _ = run(
        "set_provider_credential", "anthropic", "--secret-stdin", stdin="sk-ant-second-0002\r\n"
    )
    assert lines[0].startswith("Replaced Anthropic (global)")
    credential = ProviderCredential.objects.get()
    assert decrypt_secret(credential.secret_ciphertext) == "sk-ant-second-0002"
    # The same provider for a user is another credential.
    run(
        "set_provider_credential",
        "anthropic",
        "--secret-stdin",
        "--user",
        "ALICE@example.com",
        stdin="sk-ant-user-0003",
    )
    assert ProviderCredential.objects.count() == 2
    assert ProviderCredential.objects.get(user=user).secret_hint == "0003"


def test_set_with_add_builds_a_pool_with_weights_and_limits(user: User) -> None:
    run("set_provider_credential", "openai", "--secret-stdin", stdin="sk-openai-first-0001")
    lines, _ = run(
        "set_provider_credential",
        "openai",
        "--secret-stdin",
        "--add",
        "--weight",
        "3",
        "--rpm",
        "60",
        "--tpm",
        "90000",
        "--concurrency",
        "4",
        stdin="sk-openai-second-0002",
    )
    assert lines[0].startswith("Created OpenAI (global)")
    second = ProviderCredential.objects.get(secret_hint="0002")
    assert (second.weight, second.rpm_limit, second.tpm_limit, second.max_concurrency) == (
        3,
        60,
        90000,
        4,
    )
    assert ProviderCredential.objects.filter(provider="openai").count() == 2
    # Which member to replace would be a guess now.
    with pytest.raises(CommandError, match="pool of 2"):
        run("set_provider_credential", "openai", "--secret-stdin", stdin="sk-openai-third-003")
    with pytest.raises(CommandError, match="--rpm"):
        run(
            "set_provider_credential",
            "openai",
            "--secret-stdin",
            "--add",
            "--rpm",
            "0",
            stdin="sk-openai-third-003",
        )
    with pytest.raises(CommandError, match="--weight"):
        run(
            "set_provider_credential",
            "gemini",
            "--secret-stdin",
            "--weight",
            "0",
            stdin="gemini-key-0123456789",
        )


def test_set_scoped_to_an_access_key(make_key: MakeKey) -> None:
    key, _ = make_key()
    lines, _ = run(
        "set_provider_credential",
        "bedrock",
        "--secret-stdin",
        "--access-key",
        key.prefix,
        "--region",
        "us-east-1",
        stdin="key-scoped-secret-0004",
    )
    credential = ProviderCredential.objects.get()
    assert credential.access_key == key
    assert credential.user is None
    assert f"key {key.prefix}" in lines[0]


def test_set_warns_about_a_bedrock_credential_without_region_or_endpoint() -> None:
    _, err = run("set_provider_credential", "bedrock", "--secret-stdin", stdin="secret-0005")
    assert "without --region or --endpoint" in err
    assert ProviderCredential.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["bedrock"], "secret-0006", "Pass the secret on stdin with --secret-stdin"),
        (["bedrock", "--secret-stdin"], "", "The secret on stdin is empty"),
        (["bedrock", "--secret-stdin"], " \n\n", "The secret on stdin is empty"),
        (["bedrock", "--secret-stdin"], "line-one\nline-two\n", "line breaks"),
        (["bedrock", "--secret-stdin"], "x" * 20_000, "over 16384 characters"),
        (["azure", "--secret-stdin"], "secret-0006", "invalid choice: 'azure'"),
        (["bedrock", "--secret-stdin", "--mode", "fast"], "secret-0006", "invalid choice"),
        (
            ["bedrock", "--secret-stdin", "--user", "nobody@example.com"],
            "secret-0006",
            r"No user with email 'nobody@example\.com'",
        ),
        (
            ["bedrock", "--secret-stdin", "--access-key", "gw_unknown0"],
            "secret-0006",
            "No access key with prefix 'gw_unknown0'",
        ),
        (
            ["bedrock", "--secret-stdin", "--user", "alice@example.com", "--access-key", "gw_x"],
            "secret-0006",
            "not allowed with argument --user",
        ),
        (
            ["bedrock", "--secret-stdin", "--endpoint", "ftp://files.example.com"],
            "secret-0006",
            "'ftp://files.example.com' is not an http",
        ),
        (
            ["bedrock", "--secret-stdin", "--endpoint", "bedrock.example.com"],
            "secret-0006",
            "is not an http",
        ),
        (["bedrock", "--secret-stdin", "--region", "r" * 40], "secret-0006", "region is over"),
    ],
)
def test_set_refuses_bad_input(user: User, args: list[str], stdin: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("set_provider_credential", *args, stdin=stdin)
    assert not ProviderCredential.objects.exists()


def test_set_refuses_both_scopes_given_as_options(make_key: MakeKey, user: User) -> None:
    # call_command's keyword options bypass argparse's exclusive group; the command checks too.
    key, _ = make_key(user=user)
    with pytest.raises(CommandError, match="--user or --access-key, not both"):
        run(
            "set_provider_credential",
            "bedrock",
            secret_stdin=True,
            user=user.email,
            access_key=key.prefix,
            stdin="secret-0007",
        )
    assert not ProviderCredential.objects.exists()


# --- rotate_encryption_keys -------------------------------------------------------------------


def test_rotate_encryption_keys_reports_counts(
    settings: Any, fernet_keys: list[str], user: User
) -> None:
    run("set_provider_credential", "anthropic", "--secret-stdin", stdin="sk-ant-0000000001")
    run("set_provider_credential", "bedrock", "--secret-stdin", "--user", user.email, stdin="b-1")
    new_key = Fernet.generate_key().decode()
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key, *fernet_keys]

    lines, _ = run("rotate_encryption_keys")

    assert lines == ["Re-encrypted 2 secret(s); 0 failed."]
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key]
    secrets = {decrypt_secret(c.secret_ciphertext) for c in ProviderCredential.objects.all()}
    assert secrets == {"sk-ant-0000000001", "b-1"}


def test_rotate_encryption_keys_fails_naming_what_it_cannot_decrypt(
    settings: Any, fernet_keys: list[str], user: User
) -> None:
    run("set_provider_credential", "bedrock", "--secret-stdin", "--user", user.email, stdin="s-1")
    lost = ProviderCredential.objects.get()
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    run("set_provider_credential", "anthropic", "--secret-stdin", stdin="sk-ant-0000000002")
    out = StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("rotate_encryption_keys", stdout=out)

    assert out.getvalue() == "Re-encrypted 1 secret(s); 1 failed.\n"
    message = str(failure.value)
    assert message.startswith("1 secret(s) could not be decrypted")
    assert f"#{lost.pk} AWS Bedrock (user alice@example.com)" in message


# --- A real manage.py -------------------------------------------------------------------------


def test_manage_py_create_access_key_last_line_verifies(tmp_path: Path) -> None:
    """The contract scripts rely on, through a real process and its own (fresh) database."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        DEBUG="true",
        GATEWAY_DATA_DIR=str(tmp_path),
        SECRET_KEY="test-secret-key-for-a-subprocess-0123456789",
        GATEWAY_KEY_HASH_SECRET="test-hash-secret-for-a-subprocess",
        GATEWAY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    manage = [sys.executable, str(Path(django_settings.BASE_DIR) / "manage.py")]

    def manage_py(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*manage, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )

    migrated = manage_py("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr

    created = manage_py("create_access_key", "ops@example.com", "--create-user", "--label", "ops")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) >= 2
    plaintext = lines[-1]

    check = manage_py(
        "shell",
        "--no-imports",
        "-c",
        "import sys; from accounts.tests.helpers import verified_key; "
        "key = verified_key(plaintext=sys.stdin.read().strip()); "
        "print(key.user.email if key else 'refused')",
        stdin=plaintext,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "ops@example.com"

    refused = manage_py("create_access_key", "ghost@example.com")
    assert refused.returncode != 0
    assert "No user with email 'ghost@example.com'" in refused.stderr
    assert refused.stdout == ""

    stored = manage_py(
        "set_provider_credential",
        "anthropic",
        "--secret-stdin",
        "--user",
        "ops@example.com",
        stdin="sk-ant-through-a-pipe-0009\n",
    )
    assert stored.returncode == 0, stored.stderr
    assert "sk-ant-through-a-pipe" not in stored.stdout + stored.stderr
    assert "…0009" in stored.stdout
