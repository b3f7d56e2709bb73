"""Settings load from the environment and fail loudly, naming the variable.

Each case imports the settings in a fresh interpreter with a crafted environment (nothing
inherited from the test run), as a start-up would. Also checks that .env.example and the README
document every variable settings.py reads.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway_project.envparse import generate_fernet_key

BASE_DIR = Path(__file__).resolve().parents[2]
SETTINGS_FILE = BASE_DIR / "gateway_project" / "settings.py"
SECRETS = ("SECRET_KEY", "GATEWAY_ENCRYPTION_KEYS", "GATEWAY_KEY_HASH_SECRET")

# Prints the named settings as JSON. Reading a setting imports the settings module, which is
# where a start fails; the apps need not be loaded for that.
_DUMP = """
import json, sys
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in sys.argv[1:]}, default=str))
"""


def production_secrets() -> dict[str, str]:
    return {
        "SECRET_KEY": "test-secret-key-" + "x" * 40,
        "GATEWAY_ENCRYPTION_KEYS": generate_fernet_key(),
        "GATEWAY_KEY_HASH_SECRET": "test-hash-secret",
    }


def run_settings(
    data_dir: Path, variables: dict[str, str], *names: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "GATEWAY_DATA_DIR": str(data_dir),
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", _DUMP, *names],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(data_dir: Path, variables: dict[str, str], *names: str) -> dict[str, Any]:
    result = run_settings(data_dir, variables, *names)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def start_error(data_dir: Path, variables: dict[str, str]) -> str:
    """The message that stopped the start: one line naming the variable, no traceback."""
    result = run_settings(data_dir, variables, "DEBUG")
    assert result.returncode != 0, f"settings loaded: {result.stdout}"
    lines = result.stderr.strip().splitlines()
    prefix = "Configuration error: "
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0].removeprefix(prefix)


# --- values that stop the start ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("DEBUG", "perhaps", "DEBUG: expected a boolean"),
        ("GATEWAY_SERVE_STATIC", "2", "GATEWAY_SERVE_STATIC: expected a boolean"),
        ("GATEWAY_MAX_BODY_BYTES", "lots", "GATEWAY_MAX_BODY_BYTES: expected an integer"),
        ("GATEWAY_MAX_BODY_BYTES", "10", "GATEWAY_MAX_BODY_BYTES: must be at least 1024"),
        ("GATEWAY_USAGE_RETENTION_DAYS", "0", "GATEWAY_USAGE_RETENTION_DAYS: must be at least"),
        ("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", "soon", "GATEWAY_UPSTREAM_CONNECT_TIMEOUT: expected"),
        ("GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT", "nan", "GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT:"),
        ("DATABASE_URL", "postgres//nohost", "DATABASE_URL: expected a database URL"),
        ("DATABASE_URL", "mysql://u@db/gateway", "DATABASE_URL: expected a database URL"),
        ("DATABASE_URL", "postgres://u@db:port/gateway", "DATABASE_URL: expected a database URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected a URL"),
        ("REDIS_URL", "redis://localhost:port/0", "REDIS_URL: expected a URL"),
        ("CELERY_BROKER_URL", "kafka://broker", "CELERY_BROKER_URL: expected a URL"),
        ("GATEWAY_ANTHROPIC_BASE_URL", "api.anthropic.com", "GATEWAY_ANTHROPIC_BASE_URL: expected"),
        ("GATEWAY_BEDROCK_ENDPOINT_URL", "ftp://x", "GATEWAY_BEDROCK_ENDPOINT_URL: expected"),
        ("GATEWAY_LOG_FORMAT", "xml", "GATEWAY_LOG_FORMAT: expected json or plain"),
    ],
)
def test_bad_value_stops_start_naming_the_variable(
    tmp_path: Path, name: str, raw: str, expected: str
) -> None:
    message = start_error(tmp_path, {**production_secrets(), name: raw})
    assert message.startswith(expected)
    # The value is quoted so the operator can see what was wrong with it.
    assert repr(raw) in message or "must be at least" in message


def test_malformed_encryption_key_names_variable_and_position(tmp_path: Path) -> None:
    keys = f"{generate_fernet_key()},{generate_fernet_key()},not-a-fernet-key"
    message = start_error(tmp_path, {**production_secrets(), "GATEWAY_ENCRYPTION_KEYS": keys})
    assert message.startswith("GATEWAY_ENCRYPTION_KEYS: key #3 is not a valid Fernet key")
    # The bad key itself is a secret: never echoed.
    assert "not-a-fernet-key" not in message


@pytest.mark.parametrize("missing", SECRETS)
def test_missing_secret_with_debug_off_names_it(tmp_path: Path, missing: str) -> None:
    variables = production_secrets()
    del variables[missing]
    message = start_error(tmp_path, variables)
    assert message.startswith(f"{missing} is not set (nor {missing}_FILE)")
    assert not (tmp_path / "secrets").exists()


def test_manage_py_stops_with_the_variable_name(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_DATA_DIR": str(tmp_path),
        **production_secrets(),
        "GATEWAY_KEY_CACHE_TTL": "forever",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "GATEWAY_KEY_CACHE_TTL: expected a number, got 'forever'" in result.stderr


# --- secrets ----------------------------------------------------------------------------------


def test_production_start_uses_the_given_secrets(tmp_path: Path) -> None:
    given = production_secrets()
    loaded = load(
        tmp_path,
        given,
        "DEBUG",
        "SECRET_KEY",
        "GATEWAY_ENCRYPTION_KEYS",
        "GATEWAY_KEY_HASH_SECRET",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    )
    assert loaded["DEBUG"] is False
    assert loaded["SECRET_KEY"] == given["SECRET_KEY"]
    assert loaded["GATEWAY_ENCRYPTION_KEYS"] == [given["GATEWAY_ENCRYPTION_KEYS"]]
    assert loaded["GATEWAY_KEY_HASH_SECRET"] == given["GATEWAY_KEY_HASH_SECRET"]
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["CSRF_COOKIE_SECURE"] is True
    assert not (tmp_path / "secrets").exists()


def test_secrets_from_file_variants(tmp_path: Path) -> None:
    values = production_secrets()
    files_dir = tmp_path / "mounted"
    files_dir.mkdir()
    variables = {}
    for name, value in values.items():
        path = files_dir / name.lower()
        path.write_text(value + "\n")
        variables[f"{name}_FILE"] = str(path)
    loaded = load(tmp_path / "data", variables, *SECRETS)
    assert loaded["SECRET_KEY"] == values["SECRET_KEY"]
    assert loaded["GATEWAY_ENCRYPTION_KEYS"] == [values["GATEWAY_ENCRYPTION_KEYS"]]
    assert loaded["GATEWAY_KEY_HASH_SECRET"] == values["GATEWAY_KEY_HASH_SECRET"]


def test_unreadable_secret_file_names_the_file_variable(tmp_path: Path) -> None:
    variables = production_secrets()
    del variables["GATEWAY_KEY_HASH_SECRET"]
    variables["GATEWAY_KEY_HASH_SECRET_FILE"] = str(tmp_path / "absent")
    message = start_error(tmp_path, variables)
    assert message.startswith("GATEWAY_KEY_HASH_SECRET_FILE: cannot read")


def test_local_secrets_are_generated_once_privately_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load(data_dir, {"DEBUG": "true"}, *SECRETS)
    second = load(data_dir, {"DEBUG": "true"}, *SECRETS)
    assert first == second
    assert len(first["GATEWAY_ENCRYPTION_KEYS"]) == 1

    secrets_dir = data_dir / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for name in SECRETS:
        path = secrets_dir / name.lower()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        stored = path.read_text().strip()
        expected = first[name]
        assert stored == (expected[0] if isinstance(expected, list) else expected)

    # Another data directory means other secrets.
    other = load(tmp_path / "other", {"DEBUG": "true"}, *SECRETS)
    assert other["SECRET_KEY"] != first["SECRET_KEY"]


def test_given_secret_is_not_replaced_by_a_generated_one(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"DEBUG": "true", "SECRET_KEY": "mine-" + "y" * 40}, *SECRETS)
    assert loaded["SECRET_KEY"] == "mine-" + "y" * 40
    assert not (tmp_path / "secrets" / "secret_key").exists()
    assert (tmp_path / "secrets" / "gateway_key_hash_secret").exists()


def test_default_data_dir_is_ignored_by_git() -> None:
    """Generated secrets land in GATEWAY_DATA_DIR, by default ./data, which git never tracks."""
    result = subprocess.run(
        ["git", "check-ignore", "data/secrets/secret_key", "data/gateway.sqlite3"],
        cwd=BASE_DIR,
        capture_output=True,
        timeout=30,
        check=False,
    )
    if result.returncode == 128:
        pytest.skip(f"git cannot tell: {result.stderr!r}")
    # Exit 0 and both paths echoed: both are ignored.
    assert result.returncode == 0, "data/ must be listed in .gitignore"
    assert len(result.stdout.splitlines()) == 2


def test_default_data_dir_is_under_the_project(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _DUMP, "GATEWAY_DATA_DIR"],
        cwd=tmp_path,  # not the project: the default must not follow the working directory
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
            "CELERY_BROKER_URL": "memory://",
            **production_secrets(),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["GATEWAY_DATA_DIR"] == str(BASE_DIR / "data")


# --- database, cache and broker ---------------------------------------------------------------


def test_embedded_defaults(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        production_secrets(),
        "DATABASES",
        "CACHES",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_BROKER_TRANSPORT_OPTIONS",
        "STATIC_ROOT",
    )
    database = loaded["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "gateway.sqlite3")
    assert "WAL" in database["OPTIONS"]["init_command"]
    assert loaded["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert loaded["REDIS_URL"] is None
    assert loaded["CELERY_BROKER_URL"] == "filesystem://"
    options = loaded["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert (
        options["data_folder_in"]
        == options["data_folder_out"]
        == str(tmp_path / "broker" / "queue")
    )
    assert (tmp_path / "broker" / "queue").is_dir()
    assert (tmp_path / "broker" / "processed").is_dir()
    assert loaded["STATIC_ROOT"] == str(tmp_path / "static")


def test_postgres_url_uses_the_connection_pool(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            **production_secrets(),
            "DATABASE_URL": "postgres://gw:pw@db.internal:5433/gateway",
            "GATEWAY_DB_POOL_MAX_SIZE": "25",
        },
        "DATABASES",
    )
    database = loaded["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "db.internal",
        5433,
        "gateway",
    )
    # Persistent connections are off: the pool hands connections out instead.
    assert database["CONN_MAX_AGE"] == 0
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 25, "timeout": 10.0}


def test_bad_pool_size_names_the_variable(tmp_path: Path) -> None:
    message = start_error(
        tmp_path,
        {
            **production_secrets(),
            "DATABASE_URL": "postgres://gw@db.internal/gateway",
            "GATEWAY_DB_POOL_MAX_SIZE": "0",
        },
    )
    assert message.startswith("GATEWAY_DB_POOL_MAX_SIZE: must be at least 1")


def test_redis_url_backs_the_cache_and_the_broker(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {**production_secrets(), "REDIS_URL": "redis://cache.internal:6379/3"},
        "CACHES",
        "REDIS_URL",
        "CELERY_BROKER_URL",
    )
    cache = loaded["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/3"
    assert loaded["REDIS_URL"] == "redis://cache.internal:6379/3"
    assert loaded["CELERY_BROKER_URL"] == "redis://cache.internal:6379/3"
    assert not (tmp_path / "broker").exists()


def test_explicit_broker_url_wins(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            **production_secrets(),
            "REDIS_URL": "redis://cache.internal:6379/0",
            "CELERY_BROKER_URL": "redis://cache.internal:6379/1",
        },
        "CELERY_BROKER_URL",
    )
    assert loaded["CELERY_BROKER_URL"] == "redis://cache.internal:6379/1"


def test_explicit_embedded_broker_url(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {**production_secrets(), "CELERY_BROKER_URL": "filesystem://"},
        "CELERY_BROKER_URL",
        "CELERY_BROKER_TRANSPORT_OPTIONS",
    )
    assert loaded["CELERY_BROKER_URL"] == "filesystem://"
    assert loaded["CELERY_BROKER_TRANSPORT_OPTIONS"]["store_processed"] is False


def test_gateway_urls_and_hosts(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            **production_secrets(),
            "ALLOWED_HOSTS": "gateway.example.com, .internal",
            "GATEWAY_ANTHROPIC_BASE_URL": "http://127.0.0.1:9000/",
        },
        "ALLOWED_HOSTS",
        "GATEWAY_ANTHROPIC_BASE_URL",
        "GATEWAY_BEDROCK_ENDPOINT_URL",
        "GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT",
        "GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
    )
    assert loaded["ALLOWED_HOSTS"] == ["gateway.example.com", ".internal"]
    assert loaded["GATEWAY_ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9000"
    assert (
        loaded["GATEWAY_BEDROCK_ENDPOINT_URL"] == "https://bedrock-runtime.{region}.amazonaws.com"
    )
    assert loaded["GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT"] > 0
    assert loaded["GATEWAY_UPSTREAM_CONNECT_TIMEOUT"] > 0


# --- documentation stays in sync with settings.py ---------------------------------------------


def settings_variables() -> set[str]:
    """Every variable settings.py reads through its EnvReader (``env.<type>("NAME", ...)``)."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def secret_variables() -> set[str]:
    """Variables read with env.secret(...), which also accept NAME_FILE."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "secret"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


# Read outside settings.py, by the run command; documented beside the others.
VARIABLES_READ_ELSEWHERE = {"GATEWAY_ADMIN_EMAIL"}
# Read by docker-compose.yml only (the bundled PostgreSQL's password).
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD"}


def env_example_variables() -> set[str]:
    """Names in .env.example, whether set (NAME=...) or shown commented out (# NAME=...)."""
    text = (BASE_DIR / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_settings_reads_the_contract_variables() -> None:
    contract = {
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "GATEWAY_DATA_DIR",
        "GATEWAY_ENCRYPTION_KEYS",
        "GATEWAY_KEY_HASH_SECRET",
        "GATEWAY_ANTHROPIC_BASE_URL",
        "GATEWAY_BEDROCK_ENDPOINT_URL",
        "GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
        "GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT",
    }
    assert contract <= settings_variables()
    assert set(SECRETS) <= secret_variables()


def test_env_example_documents_every_settings_variable() -> None:
    documented = env_example_variables()
    missing = sorted(settings_variables() - documented)
    assert not missing, (
        f"settings.py reads these but .env.example does not document them: {missing}"
    )
    unknown = sorted(
        documented
        - settings_variables()
        - {f"{name}_FILE" for name in secret_variables()}
        - VARIABLES_READ_ELSEWHERE
        - COMPOSE_VARIABLES
    )
    assert not unknown, f".env.example documents variables nothing reads: {unknown}"


def test_readme_configuration_table_lists_every_variable() -> None:
    readme = (BASE_DIR / "README.md").read_text()
    in_table = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`", readme, flags=re.MULTILINE))
    missing = sorted((settings_variables() | VARIABLES_READ_ELSEWHERE) - in_table)
    assert not missing, f"README.md's configuration table lacks: {missing}"
