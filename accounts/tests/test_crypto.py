"""accounts.crypto: secrets under MultiFernet, key rotation, the access-key format and HMAC."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from accounts.crypto import (
    ACCESS_KEY_PREFIX_LENGTH,
    SecretDecryptionError,
    access_key_prefix,
    decrypt_secret,
    encrypt_secret,
    hash_access_key,
    new_access_key,
    rotate_secret,
    secret_hint,
)


def test_encrypt_round_trip_and_scheme_tag(fernet_keys: list[str]) -> None:
    stored = encrypt_secret("sk-ant-secret-value")
    assert stored.startswith("fernet:")
    assert "sk-ant-secret-value" not in stored
    assert decrypt_secret(stored) == "sk-ant-secret-value"


def test_encryption_is_randomised(fernet_keys: list[str]) -> None:
    assert encrypt_secret("same") != encrypt_secret("same")


def test_first_key_encrypts_and_every_key_decrypts(settings: Any, fernet_keys: list[str]) -> None:
    first, second = fernet_keys
    stored = encrypt_secret("value")
    Fernet(first.encode()).decrypt(stored.removeprefix("fernet:").encode())
    settings.GATEWAY_ENCRYPTION_KEYS = [second, first]
    assert decrypt_secret(stored) == "value"


def test_rotation_with_a_new_first_key(settings: Any, fernet_keys: list[str]) -> None:
    old_key = fernet_keys[0]
    stored = encrypt_secret("value")
    new_key = Fernet.generate_key().decode()
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key, old_key]

    rotated = rotate_secret(stored)

    # Under the new key alone the rotated secret decrypts and the old one does not.
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key]
    assert decrypt_secret(rotated) == "value"
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(stored)


def test_unknown_key_cannot_decrypt(settings: Any, fernet_keys: list[str]) -> None:
    stored = encrypt_secret("value")
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretDecryptionError, match="no configured encryption key"):
        decrypt_secret(stored)
    with pytest.raises(SecretDecryptionError):
        rotate_secret(stored)


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("no-scheme-tag", "no scheme tag"),
        ("kms:abc", "unknown encryption scheme 'kms'"),
        ("fernet:not-a-token", "no configured encryption key"),
        ("fernet:", "no configured encryption key"),
    ],
)
def test_malformed_stored_secrets(fernet_keys: list[str], stored: str, message: str) -> None:
    with pytest.raises(SecretDecryptionError, match=message):
        decrypt_secret(stored)


def test_hash_is_hmac_under_the_configured_secret(settings: Any) -> None:
    settings.GATEWAY_KEY_HASH_SECRET = "one"
    first = hash_access_key("gw_abcdefgh_xyz")
    assert len(first) == 64
    assert first == hash_access_key("gw_abcdefgh_xyz")
    assert first != hash_access_key("gw_abcdefgh_xyZ")
    settings.GATEWAY_KEY_HASH_SECRET = "two"
    assert first != hash_access_key("gw_abcdefgh_xyz")


def test_new_access_keys_have_a_recognisable_prefix() -> None:
    seen = set()
    for _ in range(50):
        prefix, plaintext = new_access_key()
        assert plaintext.startswith(prefix + "_")
        assert len(prefix) == ACCESS_KEY_PREFIX_LENGTH
        assert prefix.startswith("gw_")
        assert not set(prefix[3:]) & set("l10")
        assert len(plaintext) >= ACCESS_KEY_PREFIX_LENGTH + 40
        assert access_key_prefix(plaintext) == prefix
        seen.add(plaintext)
    assert len(seen) == 50


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "gw_abc",
        "gw_abcdefgh",
        "gw_abcdefgh_",  # nothing after the prefix
        "xx_abcdefgh_secret",
        "gw_abcdefghXsecret",
        "gw_abcdefgh_" + "x" * 300,
    ],
)
def test_access_key_prefix_rejects_what_is_not_a_key(candidate: str) -> None:
    assert access_key_prefix(candidate) is None


def test_secret_hint_keeps_four_characters_of_long_secrets_only() -> None:
    assert secret_hint("abcdefghijkl1234") == "1234"
    assert secret_hint("short-secret") == "cret"
    assert secret_hint("tiny") == ""
