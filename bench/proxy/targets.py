"""The systems under test: the fakes called directly, the relay floor, the gateway, LiteLLM.

A ``Target`` knows where to send its request (an Anthropic Messages or an OpenAI chat request,
``surface``), with which headers and bodies, and which server process to watch (memory, CPU
time). One server can serve several targets: the gateway serves the Anthropic surface, the
OpenAI surface (bearer and ``/ak/`` forms) and the OpenAI → Anthropic translation; the relay and
LiteLLM serve both surfaces. The gateway is prepared here too: migrated, with a key and its
credentials created through ``accounts.services`` (``gateway_setup``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.proxy.processes import MAIN_PYTHON, REPO, Server, free_port, pinned

MODEL = "claude-sonnet-4-5-20250929"
# The OpenAI surface's model: bare, so the gateway sends it to OpenAI unchanged.
OPENAI_MODEL = "gpt-4o-mini"
# A Claude model asked for by an OpenAI client: the gateway translates to Anthropic and back.
TRANSLATED_MODEL = "claude-sonnet-4-5"
ANTHROPIC = "anthropic"
OPENAI = "openai"
LITELLM_BIN = REPO / "bench" / ".venv-litellm" / "bin" / "litellm"
TOOLS_BIN = REPO / "bench" / ".venv-tools" / "bin"
BASE_HEADERS = [("content-type", "application/json"), ("anthropic-version", "2023-06-01")]
# The client's own Anthropic key, which the gateway forwards; the fake accepts any.
CLIENT_API_KEY = "sk-ant-bench-client"
# A second client key for the fallback scenario, so its failures open no circuit of the first.
FALLBACK_API_KEY = "sk-ant-bench-fallback"
FALLBACK_STATUS_HEADER = ("x-bench-anthropic-status", "529")
# The OpenAI client's own key, for the fake OpenAI called directly or through the relay.
OPENAI_CLIENT_KEY = "sk-bench-openai-client"
OPENAI_HEADERS = [("content-type", "application/json")]


@dataclass
class Target:
    name: str
    messages_url: str  # where the POST goes (Messages or chat completions)
    headers: list[tuple[str, str]]
    server: Server | None = None  # None for a fake called directly (``watched`` instead)
    notes: list[str] = field(default_factory=list)
    surface: str = ANTHROPIC
    body: str = "plain"  # names of the request bodies the benchmark wrote (Context.bodies)
    stream_body: str = "stream"
    watched: Server | None = None  # the process whose CPU and memory count, when not server

    @property
    def events(self) -> str:
        """The SSE dialect of its streams (``bench.loadgen --events``)."""
        return self.surface


def _cpu_ticks(stat_path: Path) -> int:
    """User + system CPU ticks from a ``/proc/.../stat`` file (0 once the task is gone)."""
    try:
        stat = stat_path.read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (all threads)."""
    from bench.proxy.processes import _children

    members = [pid, *_children(pid)]
    return sum(_cpu_ticks(Path(f"/proc/{member}/stat")) for member in members) / os.sysconf(
        "SC_CLK_TCK"
    )


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the main thread of a process and of each live descendant:
    a server's event loop. What ``cpu_seconds`` counts beyond it is the other threads' (the
    gateway's usage writer above all)."""
    from bench.proxy.processes import _children

    members = [pid, *_children(pid)]
    ticks = sum(_cpu_ticks(Path(f"/proc/{member}/task/{member}/stat")) for member in members)
    return ticks / os.sysconf("SC_CLK_TCK")


def gateway_env(
    *,
    fake_url: str,
    data_dir: Path,
    database_url: str,
    redis_url: str,
    openai_url: str = "",
) -> dict:
    env = dict(os.environ)
    if openai_url:
        # The stored OpenAI credential names the fake too; this is the default behind it.
        env["GATEWAY_OPENAI_BASE_URL"] = openai_url
    env.update(
        {
            "DEBUG": "true",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_ANTHROPIC_BASE_URL": fake_url,
            # Every fallback request must take the full path (Anthropic 529, then Bedrock);
            # with the default threshold the circuit would open and skip the 529 round trip.
            "GATEWAY_CIRCUIT_FAILURE_THRESHOLD": "1000000000",
            "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        }
    )
    env.pop("CELERY_BROKER_URL", None)
    return env


def debug_off(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The same gateway with DEBUG off: production settings, reading the secrets that the
    DEBUG run generated into the data directory (so the access key still verifies)."""
    secrets_dir = data_dir / "secrets"
    return {
        **env,
        "DEBUG": "false",
        "SECRET_KEY_FILE": str(secrets_dir / "secret_key"),
        "GATEWAY_ENCRYPTION_KEYS_FILE": str(secrets_dir / "gateway_encryption_keys"),
        "GATEWAY_KEY_HASH_SECRET_FILE": str(secrets_dir / "gateway_key_hash_secret"),
    }


def prepare_gateway(
    env: dict[str, str], *, fake_url: str, log: Path, openai_url: str = "", source: Path = REPO
) -> str:
    """Migrate the database and create the benchmark's key and credentials, with the code in
    ``source``; returns the plaintext key."""
    with log.open("ab") as handle:
        subprocess.run(  # noqa: S603 - fixed commands built here
            [str(MAIN_PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=source,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )
    command = [str(MAIN_PYTHON), "-m", "bench.proxy.gateway_setup", "--bedrock-endpoint", fake_url]
    if openai_url:
        command += ["--openai-endpoint", openai_url]
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        command,
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return str(json.loads(finished.stdout.strip().splitlines()[-1])["access_key"])


def start_gateway(
    *,
    name: str,
    env: dict[str, str],
    access_key: str,
    log_dir: Path,
    core: int | None,
    server: str = "uvicorn",
    app: str = "gateway_project.asgi:application",
    python: str = str(MAIN_PYTHON),
    source: Path = REPO,
    workers: int = 1,
) -> Target:
    """A gateway under uvicorn (uvloop, httptools; ``workers`` processes) or granian (from the
    tools venv, one worker), running the code in ``source``."""
    port = free_port()
    if server == "uvicorn":
        command = [
            python,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ]
    else:
        command = [
            str(TOOLS_BIN / "granian"),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "--no-access-log",
            app,
        ]
    process = Server(name, pinned(command, core), env, log_dir / f"{name}.log", cwd=source)
    process.base_url = f"http://127.0.0.1:{port}"
    process.start()
    process.wait_http("/healthz", timeout=60)
    return Target(
        name=name,
        messages_url=f"{process.base_url}/ak/{access_key}/v1/messages",
        headers=[("x-api-key", CLIENT_API_KEY), *BASE_HEADERS],
        server=process,
    )


def start_litellm(
    *, fake_url: str, log_dir: Path, core: int | None, openai_url: str = ""
) -> Target:
    """LiteLLM's proxy, one worker, with the config in bench/litellm_config.yaml."""
    port = free_port()
    master_key = "sk-bench-" + secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        {
            "BENCH_FAKE_URL": fake_url,
            # LiteLLM's openai/ models take the base URL with its /v1, as the OpenAI SDK does.
            "BENCH_OPENAI_FAKE_URL": (openai_url or fake_url) + "/v1",
            "LITELLM_MASTER_KEY": master_key,
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
        }
    )
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    command = [
        str(LITELLM_BIN),
        "--config",
        str(REPO / "bench" / "litellm_config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    process = Server("litellm", pinned(command, core), env, log_dir / "litellm.log")
    process.base_url = f"http://127.0.0.1:{port}"
    process.start()
    process.wait_http("/health/liveliness", timeout=180)
    return Target(
        name="litellm",
        messages_url=f"{process.base_url}/v1/messages",
        headers=[("x-api-key", master_key), *BASE_HEADERS],
        server=process,
    )


def direct_target(fake_url: str) -> Target:
    return Target(
        name="direct",
        messages_url=f"{fake_url}/v1/messages",
        headers=[("x-api-key", CLIENT_API_KEY), *BASE_HEADERS],
    )


def start_relay(*, fake_url: str, openai_url: str, log_dir: Path, core: int | None) -> Server:
    """The relay floor (``bench.proxy.relay``): chat completions to the fake OpenAI, every other
    path to the Anthropic fake."""
    port = free_port()
    command = [
        str(MAIN_PYTHON),
        "-m",
        "bench.proxy.relay",
        "--port",
        str(port),
        "--upstream",
        f"/v1/chat/={openai_url}",
        "--upstream",
        f"/={fake_url}",
    ]
    process = Server("relay", pinned(command, core), dict(os.environ), log_dir / "relay.log")
    process.base_url = f"http://127.0.0.1:{port}"
    process.start()
    process.wait_http("/healthz", timeout=30)
    return process


def relay_target(relay: Server) -> Target:
    """The Anthropic surface through the relay floor."""
    return Target(
        name="relay",
        messages_url=f"{relay.base_url}/v1/messages",
        headers=[("x-api-key", CLIENT_API_KEY), *BASE_HEADERS],
        server=relay,
    )


def _openai(
    name: str, url: str, key: str, *, server: Server | None, watched: Server | None = None
) -> Target:
    return Target(
        name=name,
        messages_url=url,
        headers=[("authorization", f"Bearer {key}"), *OPENAI_HEADERS],
        server=server,
        surface=OPENAI,
        body="openai-plain",
        stream_body="openai-stream",
        watched=watched,
    )


def openai_targets(
    *,
    openai_fake: Server,
    relay: Server | None,
    gateway: Target | None,
    access_key: str,
    litellm: Target | None,
) -> list[Target]:
    """The OpenAI surface: the fake OpenAI directly (the baseline), through the relay, the
    gateway (``/v1/`` with the key as bearer token, and ``/ak/<key>/v1/``), LiteLLM; and the
    translation: an OpenAI client asking the gateway for a Claude model."""
    path = "/v1/chat/completions"
    targets = [
        _openai(
            "openai-direct",
            openai_fake.base_url + path,
            OPENAI_CLIENT_KEY,
            server=None,
            watched=openai_fake,
        )
    ]
    if relay is not None:
        targets.append(
            _openai("openai-relay", relay.base_url + path, OPENAI_CLIENT_KEY, server=relay)
        )
    if gateway is not None and gateway.server is not None:
        base = gateway.server.base_url
        targets.append(_openai("openai-gateway", base + path, access_key, server=gateway.server))
        ak_url = f"{base}/ak/{access_key}{path}"
        targets.append(_openai("openai-gateway-ak", ak_url, access_key, server=gateway.server))
        translated = _openai("openai-translated", base + path, access_key, server=gateway.server)
        translated.body, translated.stream_body = "translated-plain", "translated-stream"
        targets.append(translated)
    if litellm is not None and litellm.server is not None:
        master_key = dict(litellm.headers)["x-api-key"]
        targets.append(
            _openai(
                "openai-litellm", litellm.server.base_url + path, master_key, server=litellm.server
            )
        )
    return targets


def fallback_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A gateway target's headers for the fallback scenario: the fallback client key, and the
    fake's Anthropic answering 529 at once."""
    swapped = [
        ("x-api-key", FALLBACK_API_KEY) if name == "x-api-key" else (name, value)
        for name, value in headers
    ]
    return [*swapped, FALLBACK_STATUS_HEADER]


def request_body(*, stream: bool, paced: bool = True) -> bytes:
    """The benchmark's Messages request; streams ask the fake for 20 ms between deltas unless
    ``paced`` is False (then the fake sends every delta at once)."""
    prompt = "Say hello to the benchmark."
    if stream and paced:
        prompt += " [[fake delta_interval_ms=20]]"
    body: dict[str, object] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def openai_request_body(*, stream: bool, model: str = OPENAI_MODEL) -> bytes:
    """The benchmark's chat completions request. Streams ask for the usage chunk themselves
    (``stream_options.include_usage``), so the gateway can pass the body through unchanged
    (it adds the option, re-encoding the body, when a client leaves it out)."""
    prompt = "Say hello to the benchmark."
    if stream:
        prompt += " [[fake delta_interval_ms=20]]"
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()
