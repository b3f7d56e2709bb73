"""Encryption of provider secrets at rest, and the HMAC of access keys.

Secrets are encrypted with cryptography's MultiFernet over GATEWAY_ENCRYPTION_KEYS: the first key
encrypts, every key decrypts, and ``rotate`` re-encrypts under the first. Ciphertexts carry a
scheme tag (``fernet:``) so that another ``SecretCipher`` — cloud KMS envelope encryption, where a
data key wrapped by the KMS encrypts the secret — can be added beside it and chosen by that tag
without touching stored rows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretDecryptionError(Exception):
    """A stored secret that none of the configured keys can decrypt."""


class SecretCipher(Protocol):
    """What the gateway needs from an encryption scheme for stored secrets."""

    scheme: str

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str: ...

    def rotate(self, ciphertext: str) -> str: ...


class FernetCipher:
    scheme = "fernet"

    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError("no configured encryption key decrypts it") from exc

    def rotate(self, ciphertext: str) -> str:
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError("no configured encryption key decrypts it") from exc


@lru_cache(maxsize=4)
def _fernet_cipher(keys: tuple[str, ...]) -> FernetCipher:
    return FernetCipher(list(keys))


def _cipher_for(scheme: str) -> SecretCipher:
    if scheme == FernetCipher.scheme:
        return _fernet_cipher(tuple(settings.GATEWAY_ENCRYPTION_KEYS))
    raise SecretDecryptionError(f"unknown encryption scheme {scheme!r}")


def encrypt_secret(plaintext: str) -> str:
    cipher = _cipher_for(FernetCipher.scheme)
    return f"{cipher.scheme}:{cipher.encrypt(plaintext)}"


def _split(stored: str) -> tuple[SecretCipher, str]:
    scheme, sep, body = stored.partition(":")
    if not sep:
        raise SecretDecryptionError("stored secret has no scheme tag")
    return _cipher_for(scheme), body


def decrypt_secret(stored: str) -> str:
    cipher, body = _split(stored)
    return cipher.decrypt(body)


def rotate_secret(stored: str) -> str:
    """Re-encrypt under the current first key (and current scheme)."""
    cipher, body = _split(stored)
    if cipher.scheme == FernetCipher.scheme:
        return f"{cipher.scheme}:{cipher.rotate(body)}"
    return encrypt_secret(cipher.decrypt(body))


def hash_access_key(plaintext: str) -> str:
    """HMAC-SHA256 of an access key under GATEWAY_KEY_HASH_SECRET, as hex."""
    return hmac.new(
        settings.GATEWAY_KEY_HASH_SECRET.encode(), plaintext.encode(), hashlib.sha256
    ).hexdigest()


def secret_hint(secret: str) -> str:
    """The last four characters, enough to recognise a secret, never enough to use it."""
    return secret[-4:] if len(secret) >= 12 else ""


# Access keys look like ``gw_k3x9q2mb_<43 url-safe characters>``: a recognisable tag, a public
# prefix (shown in the admin and logs, used for the lookup), then 256 bits of secret.
ACCESS_KEY_TAG = "gw_"
_PREFIX_BODY_LENGTH = 8
_PREFIX_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"  # no l/1/0: prefixes are read aloud
ACCESS_KEY_PREFIX_LENGTH = len(ACCESS_KEY_TAG) + _PREFIX_BODY_LENGTH


def new_access_key() -> tuple[str, str]:
    """A fresh (prefix, plaintext key) pair."""
    body = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_BODY_LENGTH))
    prefix = ACCESS_KEY_TAG + body
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


def access_key_prefix(plaintext: str) -> str | None:
    """The public prefix of something that looks like an access key, else None."""
    if (
        len(plaintext) < ACCESS_KEY_PREFIX_LENGTH + 2
        or len(plaintext) > 200
        or not plaintext.startswith(ACCESS_KEY_TAG)
        or plaintext[ACCESS_KEY_PREFIX_LENGTH] != "_"
    ):
        return None
    return plaintext[:ACCESS_KEY_PREFIX_LENGTH]
