"""docker-compose.yml and the Dockerfile, checked without Docker.

The compose file is parsed (pyyaml, with the merge keys compose uses) and checked for its
services, their commands and dependencies, and that every variable it hands the gateway is one
settings.py reads, with the required secrets always provided.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_project.tests.test_settings import (
    SECRETS,
    env_example_variables,
    secret_variables,
    settings_variables,
)

BASE_DIR = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "web", "worker", "beat")
ASGI_APP = "gateway_project.asgi:application"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (BASE_DIR / "Dockerfile").read_text()
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for entry in logical:
        instruction, _, arguments = entry.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def command_argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return list(command) if isinstance(command, list) else shlex.split(command)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def interpolated(value: str) -> set[str]:
    """Names of the ${VAR...} references compose fills in from .env or the shell."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", value))


def test_services_of_the_production_shape(services: dict[str, Any]) -> None:
    assert set(services) == {"db", "redis", *APP_SERVICES}
    assert services["db"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")


def test_gateway_services_share_one_image_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] in (".", {"context": "."}), name
        assert service["image"] == services["web"]["image"], name
        assert service["env_file"] in (".env", [".env"]), name


def test_commands(services: dict[str, Any]) -> None:
    assert command_argv(services["migrate"])[:3] == ["python", "manage.py", "migrate"]
    assert "--noinput" in command_argv(services["migrate"])

    web = command_argv(services["web"])
    assert web[:2] == ["uvicorn", ASGI_APP]
    workers = int(web[web.index("--workers") + 1])
    assert workers > 1
    # The lifespan's shutdown drains the usage writer; uvicorn must not rewrite client addresses.
    assert web[web.index("--lifespan") + 1] == "on"
    assert "--no-proxy-headers" in web
    # Proxy paths carry access keys: an access log would write them down.
    assert "--no-access-log" in web
    assert web[web.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - the container must listen on its interface

    assert command_argv(services["worker"])[:4] == ["celery", "-A", "gateway_project", "worker"]
    assert command_argv(services["beat"])[:4] == ["celery", "-A", "gateway_project", "beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_start_order_and_healthchecks(services: dict[str, Any]) -> None:
    for name in ("db", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["db"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_web_healthcheck_probes_healthz(services: dict[str, Any]) -> None:
    probe = " ".join(services["web"]["healthcheck"]["test"])
    assert "/healthz" in probe
    assert ":8000" in probe
    assert any(port.endswith(":8000") for port in services["web"]["ports"])


def test_every_variable_given_to_the_gateway_is_read_by_settings(
    services: dict[str, Any],
) -> None:
    readable = settings_variables() | {f"{name}_FILE" for name in secret_variables()}
    for name in APP_SERVICES:
        unknown = sorted(set(environment(services[name])) - readable)
        assert not unknown, f"{name} sets variables settings.py never reads: {unknown}"


def test_required_secrets_and_wiring_are_always_provided(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = environment(services[name])
        for secret in SECRETS:
            # ${NAME:?message} makes compose refuse to start without the value.
            assert env.get(secret) == f"${{{secret}:?set {secret} in .env}}", (name, secret)
        assert env["DEBUG"] == "false"
        assert env["DATABASE_URL"].startswith("postgres://gateway:")
        assert env["DATABASE_URL"].endswith("@db:5432/gateway")
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["CELERY_BROKER_URL"] != env["REDIS_URL"]


def test_database_password_is_the_one_postgres_gets(services: dict[str, Any]) -> None:
    password = services["db"]["environment"]["POSTGRES_PASSWORD"]
    assert interpolated(password) == {"POSTGRES_PASSWORD"}
    database_url = environment(services["web"])["DATABASE_URL"]
    assert interpolated(database_url) == {"POSTGRES_PASSWORD"}
    assert services["db"]["environment"]["POSTGRES_USER"] == "gateway"
    assert services["db"]["environment"]["POSTGRES_DB"] == "gateway"


def test_env_example_provides_what_compose_interpolates(compose: dict[str, Any]) -> None:
    """Every ${VAR} in the compose file is named in .env.example, so `cp` + fill in works."""
    references = interpolated(json.dumps(compose))
    assert {"POSTGRES_PASSWORD", *SECRETS} <= references
    text = (BASE_DIR / ".env.example").read_text()
    required = {m for m in re.findall(r"\$\{([A-Z0-9_]+):\?", json.dumps(compose))}
    for name in required:
        # Required ones are present uncommented, to be filled in.
        assert re.search(rf"^{name}=", text, flags=re.MULTILINE), name
    assert references <= env_example_variables()


def test_spool_survives_container_replacement(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "worker"):
        assert "gateway-spool:/app/data/spool" in services[name]["volumes"], name
    assert "gateway-spool" in compose["volumes"]


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_base_user_and_locked_install(dockerfile: list[tuple[str, str]]) -> None:
    instructions = [instruction for instruction, _ in dockerfile]
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    runs = [arguments for instruction, arguments in dockerfile if instruction == "RUN"]
    assert any("pip install --require-hashes -r requirements.lock" in run for run in runs)
    assert any("collectstatic --noinput" in run for run in runs)
    # The non-root user comes after everything that needs root.
    users = [arguments for instruction, arguments in dockerfile if instruction == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert instructions.index("USER") > max(
        index for index, name in enumerate(instructions) if name == "RUN"
    )


def test_dockerfile_runs_the_asgi_app(dockerfile: list[tuple[str, str]]) -> None:
    commands = [args for instruction, args in dockerfile if instruction in {"CMD", "ENTRYPOINT"}]
    assert commands
    argv = json.loads(commands[-1])
    assert argv[:2] == ["uvicorn", ASGI_APP]
    assert argv[argv.index("--lifespan") + 1] == "on"
    assert "--no-proxy-headers" in argv
    assert "--no-access-log" in argv


def test_dockerfile_throwaway_secrets_are_valid_but_not_kept(
    dockerfile: list[tuple[str, str]],
) -> None:
    from gateway_project.envparse import parse_fernet_keys

    (collect,) = [args for name, args in dockerfile if name == "RUN" and "collectstatic" in args]
    keys = re.search(r"GATEWAY_ENCRYPTION_KEYS=(\S+)", collect)
    assert keys is not None
    assert parse_fernet_keys("GATEWAY_ENCRYPTION_KEYS", keys.group(1))
    assert "DEBUG=true" not in collect  # no secrets generated into the image
    assert "rm -rf /app/data/secrets" in collect


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (BASE_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "data"} <= ignored
