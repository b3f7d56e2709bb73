"""Typed reads of environment variables for settings.py.

Every reader fails with ``EnvironmentValueError`` (an ``ImproperlyConfigured``) naming the
variable, so a bad deployment stops at start instead of at the first request. django-environ does
the parsing; this module adds the variable's name to its errors and the secret handling
(``NAME_FILE`` and generated local secrets).

The entry points (manage.py, the WSGI and ASGI modules, and any other process through the hook
settings.py installs) turn such an error into one line naming the variable and a non-zero exit,
not a traceback through Django's internals: ``exit_on_bad_environment`` and
``install_bad_environment_hook``.

Nothing here imports Django settings: it must be importable while settings are being built.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import math
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

_NOT_SET: Any = object()

# Broker URLs of these schemes name no host: "filesystem://" and "memory://" are complete.
_PATHLESS_SCHEMES = frozenset({"filesystem", "memory"})
# The database engines the gateway runs on; django-environ knows many more (MySQL, Oracle...).
_DATABASE_ENGINES = frozenset({"django.db.backends.postgresql", "django.db.backends.sqlite3"})


class EnvironmentValueError(ImproperlyConfigured):
    """A missing or unusable environment variable; the message names it and says what is wrong."""


class EnvReader:
    """Reads typed values from one environment mapping (``os.environ`` unless told otherwise).

    The readers are named after the types they return (``env.int(...)``), so inside this class
    the annotations spell the built-in types as ``builtins.int`` and so on.
    """

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
                raise EnvironmentValueError(f"{name} is not set.")
            return default
        try:
            return parse(name)
        except (ValueError, TypeError, KeyError) as exc:
            raw = self.environ[name]
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise EnvironmentValueError(f"{name}: expected {what}, got {shown!r}.") from exc

    def str(self, name: builtins.str, default: Any = _NOT_SET) -> Any:
        # The raw value: django-environ would treat a leading "$" as a reference to another
        # variable and fail with a message that does not name this one.
        return self._read(name, lambda key: self.environ[key], default, "a string")

    def bool(self, name: builtins.str, default: Any = _NOT_SET) -> Any:
        def parse(key: builtins.str) -> builtins.bool:
            raw = self.environ[key].strip().lower()
            if raw in {"1", "true", "yes", "on", "y", "t"}:
                return True
            if raw in {"0", "false", "no", "off", "n", "f"}:
                return False
            raise ValueError(raw)

        return self._read(name, parse, default, "a boolean (true/false)")

    def int(
        self, name: builtins.str, default: Any = _NOT_SET, *, minimum: builtins.int | None = None
    ) -> Any:
        value = self._read(name, lambda key: int(self.environ[key].strip()), default, "an integer")
        if minimum is not None and value is not None and value < minimum:
            raise EnvironmentValueError(f"{name}: must be at least {minimum}, got {value}.")
        return value

    def float(
        self, name: builtins.str, default: Any = _NOT_SET, *, minimum: builtins.float | None = None
    ) -> Any:
        def parse(key: builtins.str) -> builtins.float:
            value = float(self.environ[key].strip())
            # "nan" and "inf" parse as floats but pass any minimum check and break timeouts.
            if not math.isfinite(value):
                raise ValueError(value)
            return value

        value = self._read(name, parse, default, "a number")
        if minimum is not None and value is not None and value < minimum:
            raise EnvironmentValueError(f"{name}: must be at least {minimum}, got {value}.")
        return value

    def list(self, name: builtins.str, default: Any = _NOT_SET) -> Any:
        def parse(key: builtins.str) -> builtins.list[builtins.str]:
            return [item.strip() for item in self.environ[key].split(",") if item.strip()]

        return self._read(name, parse, default, "a comma-separated list")

    def choice(
        self, name: builtins.str, default: Any = _NOT_SET, *, choices: tuple[builtins.str, ...]
    ) -> Any:
        """One of ``choices``, compared without case; returned in lower case."""

        def parse(key: builtins.str) -> builtins.str:
            raw = self.environ[key].strip().lower()
            if raw not in choices:
                raise ValueError(raw)
            return raw

        return self._read(name, parse, default, " or ".join(choices))

    def url(
        self, name: builtins.str, default: Any = _NOT_SET, *, schemes: tuple[builtins.str, ...]
    ) -> Any:
        def parse(key: builtins.str) -> builtins.str:
            raw = self.environ[key].strip()
            scheme, sep, rest = raw.partition("://")
            if not sep or scheme not in schemes:
                raise ValueError(raw)
            if not rest.strip("/"):
                if scheme in _PATHLESS_SCHEMES:
                    return raw
                raise ValueError(raw)
            # Reading .port raises ValueError for a port that is not a number in range.
            urlsplit(raw).port  # noqa: B018
            return f"{scheme}://{rest.rstrip('/')}"

        return self._read(name, parse, default, f"a URL ({'/'.join(schemes)})")

    def db_url(self, name: builtins.str, default: builtins.str) -> dict[builtins.str, Any]:
        def parse(key: builtins.str) -> dict[builtins.str, Any]:
            raw = self.environ[key].strip()
            if "://" not in raw:
                raise ValueError(raw)
            config = self.env.db_url_config(raw)
            if config.get("ENGINE") not in _DATABASE_ENGINES or not config.get("NAME"):
                raise ValueError(raw)
            return config

        if not self.is_set(name):
            return self.env.db_url_config(default)
        return self._read(name, parse, None, "a database URL (postgres://… or sqlite:///…)")

    def secret(
        self,
        name: builtins.str,
        *,
        generate: Callable[[], builtins.str] | None,
        data_dir: Path,
    ) -> builtins.str:
        """A secret from NAME, from the file named by NAME_FILE, or generated once into data_dir.

        ``generate`` is None when generating is not allowed (DEBUG off): a missing secret is then
        a start-up error naming it.
        """
        if self.is_set(name):
            value = str(self.environ[name]).strip()
            if not value:
                raise EnvironmentValueError(f"{name} is blank.")
            return value
        file_var = f"{name}_FILE"
        if self.is_set(file_var):
            path = Path(self.environ[file_var])
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise EnvironmentValueError(f"{file_var}: cannot read {path}: {exc}") from exc
            if not value:
                raise EnvironmentValueError(f"{file_var}: {path} is empty.")
            return value
        if generate is None:
            raise EnvironmentValueError(
                f"{name} is not set (nor {file_var}). Set it in the environment; only with "
                "DEBUG=true are missing secrets generated into GATEWAY_DATA_DIR."
            )
        return _local_secret(data_dir / "secrets" / name.lower(), generate)


def _local_secret(path: Path, generate: Callable[[], str]) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(path, generate() + "\n", replace=False)
    value = path.read_text().strip()
    if not value:
        raise EnvironmentValueError(f"{path} is empty: delete it to have a new secret generated.")
    return value


def write_private_file(path: Path, content: str, *, replace: bool) -> None:
    """Write a file readable by its owner only (0600), never leaving it half-written.

    The content goes to a temporary file first; linking it into place fails if the file exists,
    so two processes starting at once agree on one value (the loser's is dropped) unless
    ``replace`` asks to overwrite.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            Path(temporary).replace(path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def generate_django_secret() -> str:
    return secrets.token_urlsafe(50)


def generate_fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def parse_fernet_keys(name: str, raw: str) -> list[str]:
    """Split a comma-separated list of Fernet keys, naming the position of a bad one."""
    keys = [item.strip() for item in raw.split(",")]
    if not any(keys):
        raise EnvironmentValueError(f"{name} is empty.")
    for position, key in enumerate(keys, start=1):
        try:
            # validate=True: a stray character (a quote, a space) is an error, not skipped.
            decoded = base64.b64decode(key.encode(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise EnvironmentValueError(
                f"{name}: key #{position} is not a valid Fernet key "
                "(expected 32 url-safe base64-encoded bytes)."
            )
    return keys


# --- Entry points -------------------------------------------------------------------------------


def _settings_module_in(traceback: TracebackType | None) -> bool:
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__") == "gateway_project.settings":
            return True
        traceback = traceback.tb_next
    return False


def bad_environment_message(error: BaseException) -> str | None:
    """The one line to print for an error a bad environment caused, or None for any other error.

    That is an ``EnvironmentValueError`` anywhere in the chain of causes, or an
    ``ImproperlyConfigured`` raised while settings.py ran (its own checks of values).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EnvironmentValueError) or (
            isinstance(current, ImproperlyConfigured) and _settings_module_in(current.__traceback__)
        ):
            return f"Configuration error: {current}"
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def exit_on_bad_environment() -> Iterator[None]:
    """Around an entry point: a bad environment value prints one line and exits with status 1;
    every other error propagates untouched."""
    try:
        yield
    except Exception as error:
        message = bad_environment_message(error)
        if message is None:
            raise
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        raise SystemExit(1) from None


def install_bad_environment_hook() -> None:
    """Make an uncaught bad-environment error print its one line instead of a traceback.

    For the processes no code of ours wraps: a Celery worker or beat, a WSGI or ASGI server
    importing the application. The interpreter still exits with status 1; other errors keep
    their traceback. Installing twice is harmless.
    """
    previous = sys.excepthook
    if getattr(previous, "gateway_bad_environment_hook", False):
        return

    def hook(
        kind: type[BaseException], error: BaseException, traceback: TracebackType | None
    ) -> None:
        message = bad_environment_message(error)
        if message is None:
            previous(kind, error, traceback)
        else:
            sys.stderr.write(message + "\n")

    hook.gateway_bad_environment_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
