"""Typed reads of environment variables for settings.py.

Every reader fails with ``ImproperlyConfigured`` naming the variable, so a bad deployment stops at
start instead of at the first request. django-environ does the parsing; this module adds the
variable's name to its errors and the secret handling (``NAME_FILE`` and generated local secrets).
Nothing here imports Django settings: it must be importable while settings are being built.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

_NOT_SET: Any = object()


class EnvReader:
    """Reads typed values from one environment mapping (``os.environ`` unless told otherwise)."""

    def __init__(self, environ_map: Mapping[str, str] | None = None) -> None:
        self.env = environ.Env()
        if environ_map is not None:
            self.env.ENVIRON = dict(environ_map)

    @property
    def environ(self) -> Mapping[str, str]:
        return self.env.ENVIRON

    def is_set(self, name: str) -> bool:
        return self.environ.get(name, "") != ""

    def _read(self, name: str, parse: Callable[..., Any], default: Any, what: str) -> Any:
        if not self.is_set(name):
            if default is _NOT_SET:
                raise ImproperlyConfigured(f"{name} is not set.")
            return default
        try:
            return parse(name)
        except (ValueError, TypeError, KeyError) as exc:
            raw = self.environ[name]
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise ImproperlyConfigured(f"{name}: expected {what}, got {shown!r}.") from exc

    def str(self, name: str, default: Any = _NOT_SET) -> Any:
        return self._read(name, self.env.str, default, "a string")

    def bool(self, name: str, default: Any = _NOT_SET) -> Any:
        def parse(key: str) -> bool:
            raw = self.environ[key].strip().lower()
            if raw in {"1", "true", "yes", "on", "y", "t"}:
                return True
            if raw in {"0", "false", "no", "off", "n", "f"}:
                return False
            raise ValueError(raw)

        return self._read(name, parse, default, "a boolean (true/false)")

    def int(self, name: str, default: Any = _NOT_SET, *, minimum: int | None = None) -> Any:
        value = self._read(name, lambda key: int(self.environ[key].strip()), default, "an integer")
        if minimum is not None and value is not None and value < minimum:
            raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}.")
        return value

    def float(self, name: str, default: Any = _NOT_SET, *, minimum: float | None = None) -> Any:
        value = self._read(name, lambda key: float(self.environ[key].strip()), default, "a number")
        if minimum is not None and value is not None and value < minimum:
            raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}.")
        return value

    def list(self, name: str, default: Any = _NOT_SET) -> Any:
        def parse(key: str) -> list[str]:
            return [item.strip() for item in self.environ[key].split(",") if item.strip()]

        return self._read(name, parse, default, "a comma-separated list")

    def url(self, name: str, default: Any = _NOT_SET, *, schemes: tuple[str, ...]) -> Any:
        def parse(key: str) -> str:
            raw = self.environ[key].strip()
            scheme, sep, rest = raw.partition("://")
            if not sep or scheme not in schemes or not rest:
                raise ValueError(raw)
            return raw.rstrip("/")

        return self._read(name, parse, default, f"a URL ({'/'.join(schemes)})")

    def db_url(self, name: str, default: str) -> dict[str, Any]:
        def parse(key: str) -> dict[str, Any]:
            config = self.env.db_url_config(self.environ[key])
            if not config.get("ENGINE"):
                raise ValueError(self.environ[key])
            return config

        if not self.is_set(name):
            return self.env.db_url_config(default)
        return self._read(name, parse, None, "a database URL (postgres://… or sqlite:///…)")

    def secret(
        self,
        name: str,
        *,
        generate: Callable[[], str] | None,
        data_dir: Path,
    ) -> str:
        """A secret from NAME, from the file named by NAME_FILE, or generated once into data_dir.

        ``generate`` is None when generating is not allowed (DEBUG off): a missing secret is then
        a start-up error naming it.
        """
        if self.is_set(name):
            return str(self.environ[name]).strip()
        file_var = f"{name}_FILE"
        if self.is_set(file_var):
            path = Path(self.environ[file_var])
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ImproperlyConfigured(f"{file_var}: cannot read {path}: {exc}") from exc
        if generate is None:
            raise ImproperlyConfigured(
                f"{name} is not set (nor {file_var}). Set it in the environment; only with "
                "DEBUG=true are missing secrets generated into GATEWAY_DATA_DIR."
            )
        return _local_secret(data_dir / "secrets" / name.lower(), generate)


def _local_secret(path: Path, generate: Callable[[], str]) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = generate()
    # O_EXCL: two processes starting at once must agree on one value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def generate_django_secret() -> str:
    return secrets.token_urlsafe(50)


def generate_fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def parse_fernet_keys(name: str, raw: str) -> list[str]:
    """Split a comma-separated list of Fernet keys, naming the position of a bad one."""
    keys = [item.strip() for item in raw.split(",")]
    if not any(keys):
        raise ImproperlyConfigured(f"{name} is empty.")
    for position, key in enumerate(keys, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise ImproperlyConfigured(
                f"{name}: key #{position} is not a valid Fernet key "
                "(expected 32 url-safe base64-encoded bytes)."
            )
    return keys
