"""Credentials never reach a log line: the masking itself, records through the configured
handler filters and formatters (json and plain), and the real web server started the way
run_gateway starts it."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from gateway_project.logfilters import RedactSecretsFilter, redact_secrets
from gateway_project.management.commands.run_gateway import child_commands

BASE_DIR = Path(__file__).resolve().parents[2]

KEY = "gw_k3x9q2mb_" + "S3cr3tPart-of_the_key" + "x" * 22
SECRET = KEY[len("gw_k3x9q2mb_") :]
TOKEN = "admin-api-token-5f2c9a7e1b"


# --- redact_secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"POST /ak/{KEY}/v1/messages", "POST /ak/gw_k3x9q2mb…/v1/messages"),
        (f"GET /AK/{KEY}/v1/models", "GET /AK/gw_k3x9q2mb…/v1/models"),
        (f"POST /{KEY}/v1/chat/completions", "POST /gw_k3x9q2mb…/v1/chat/completions"),
        (f"/v1beta/models?key={KEY}&alt=sse", "/v1beta/models?key=gw_k3x9q2mb…&alt=sse"),
        (f"/api/admin/usage?token={TOKEN}&days=7", "/api/admin/usage?token=***&days=7"),
        (f"/x?api_key={TOKEN}", "/x?api_key=***"),
        (f"/x?access_token={TOKEN}", "/x?access_token=***"),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer ***"),
        (f"{{'x-api-key': 'sk-ant-api03-{TOKEN}'}}", "{'x-api-key': '***'}"),
        (f"client sent sk-ant-api03-{TOKEN}", "client sent sk-ant-…"),
        # Whatever follows /ak/ is a secret, gateway-shaped or not; a mistyped key too.
        ("/ak/not-a-gateway-key-123456/v1/messages", "/ak/***/v1/messages"),
        ("/ak/gw_k3x9q2mb_trunc/v1/messages", "/ak/gw_k3x9q2mb…/v1/messages"),
        # Public prefixes (the admin shows them) and ordinary words stay.
        ("revoked gw_k3x9q2mb", "revoked gw_k3x9q2mb"),
        ("monkey=3 turkey=4", "monkey=3 turkey=4"),
        ("tokens in 12, out 3", "tokens in 12, out 3"),
    ],
)
def test_redact_secrets(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


def test_redacting_twice_changes_nothing() -> None:
    once = redact_secrets(f"/ak/{KEY}/x?key={KEY}&token={TOKEN} Bearer {TOKEN}")
    assert redact_secrets(once) == once
    assert SECRET not in once and TOKEN not in once


def masked_keys(output: str) -> int:
    """Masked keys in log output; JSON lines escape the ellipsis."""
    return output.count("gw_k3x9q2mb…") + output.count("gw_k3x9q2mb\\u2026")


# --- records through the configured handler ---------------------------------------------------


def configured_handler(format_name: str) -> tuple[logging.Handler, list[str]]:
    """A handler with the console handler's filters and the named formatter, exactly as
    settings.LOGGING declares them, writing into a list."""
    config = settings.LOGGING
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    formatter_config = dict(config["formatters"][format_name])
    factory = formatter_config.pop("()", None)
    if factory:
        handler.setFormatter(import_string(factory)(**formatter_config))
    else:
        handler.setFormatter(logging.Formatter(formatter_config["format"]))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(import_string(config["filters"][name]["()"])())
    return handler, lines


class FakeRequest:
    """What Django's request logger passes as the ``request`` extra, printed by its repr."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __str__(self) -> str:
        return f"<ASGIRequest: GET {self.path!r}>"


def test_every_configured_handler_masks() -> None:
    for name, handler in settings.LOGGING["handlers"].items():
        assert "redact_keys" in handler.get("filters", []), name
    filter_class = settings.LOGGING["filters"]["redact_keys"]["()"]
    assert import_string(filter_class) is RedactSecretsFilter


@pytest.mark.parametrize("format_name", ["json", "plain"])
def test_records_are_masked_in_message_args_extras_and_tracebacks(format_name: str) -> None:
    handler, lines = configured_handler(format_name)
    records = [
        # uvicorn's access line: the path is one of the arguments.
        logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "POST", f"/AK/{KEY}/v1/messages", "1.1", 404),
            None,
        ),
        # Django's request logger: the path in the arguments, the request as an extra.
        logging.makeLogRecord(
            {
                "name": "django.request",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": "Unauthorized: %s",
                "args": ("/api/admin/usage",),
                "request": FakeRequest(f"/api/admin/usage?token={TOKEN}"),
                "status_code": 401,
            }
        ),
        logging.makeLogRecord(
            {
                "name": "proxy.services",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": "upstream said %(detail)s",
                "args": {"detail": f"bad key {KEY} with Bearer {TOKEN}"},
                "target": f"https://gw.example/v1beta/models?key={KEY}",
            }
        ),
    ]
    try:
        raise ValueError(f"no route for /{KEY}/v1/messages?token={TOKEN}")
    except ValueError:
        records.append(
            logging.LogRecord(
                "django.request", logging.ERROR, __file__, 1, "boom", (), sys.exc_info()
            )
        )
    for record in records:
        handler.handle(record)
    output = "\n".join(lines)
    assert len(lines) == 4
    assert SECRET not in output and TOKEN not in output
    assert masked_keys(output) >= 3  # the public prefix still names the key
    assert "ValueError" in output  # the traceback is kept, masked
    if format_name == "json":
        parsed = [json.loads(line) for line in lines]
        assert parsed[0]["logger"] == "uvicorn.access"
        assert parsed[1]["request"] == "<ASGIRequest: GET '/api/admin/usage?token=***'>"
        assert parsed[1]["status_code"] == 401
        assert parsed[2]["target"] == "https://gw.example/v1beta/models?key=gw_k3x9q2mb…"
        assert "no route for /gw_k3x9q2mb…/v1/messages?token=***" in parsed[3]["exc_info"]


def test_records_without_secrets_keep_their_arguments() -> None:
    record = logging.LogRecord("proxy", logging.INFO, __file__, 1, "took %.1fs", (1.25,), None)
    assert RedactSecretsFilter().filter(record)
    assert record.args == (1.25,)
    assert record.getMessage() == "took 1.2s"


def test_a_malformed_call_does_not_print_its_arguments_raw() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", (KEY,), None)
    assert RedactSecretsFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert "gw_k3x9q2mb…" in record.getMessage()


def test_uvicorn_access_logger_gets_no_handler() -> None:
    # uvicorn writes access lines only when this logger has handlers; --no-access-log empties
    # them before the application (and Django's logging configuration) loads.
    assert settings.LOGGING["loggers"]["uvicorn.access"]["handlers"] == []
    assert settings.LOGGING["loggers"]["uvicorn.access"]["propagate"] is False


# --- the real web server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_the_web_server_logs_no_access_lines_and_no_credentials(
    tmp_path: Path, log_format: str
) -> None:
    port = _free_port()
    web = child_commands(
        host="127.0.0.1", port=port, workers=1, with_worker=False, with_beat=False
    )[0]
    env: dict[str, Any] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "true",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_LOG_FORMAT": log_format,
        "GATEWAY_LOG_LEVEL": "INFO",
        "GATEWAY_ADMIN_API_TOKEN": TOKEN + "-other",
    }
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            web.argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        nonce = secrets.token_hex(4)
        statuses = [
            httpx.get(f"{base}/AK/{KEY}/v1/models?n={nonce}").status_code,
            httpx.post(f"{base}/{KEY}/v1/messages?n={nonce}", json={}).status_code,
            httpx.get(f"{base}/v1beta/models?key={KEY}&n={nonce}").status_code,
            httpx.get(f"{base}/api/admin/usage/summary?token={TOKEN}&n={nonce}").status_code,
            httpx.get(
                f"{base}/api/admin/usage/summary?n={nonce}",
                headers={"authorization": f"Bearer {TOKEN}"},
            ).status_code,
        ]
        assert all(status >= 400 for status in statuses), statuses
        # Django's request logger writes its warnings as the responses go out.
        time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(30)
    output = log_path.read_text()
    assert SECRET not in output and TOKEN not in output, output
    # The 404s were logged, masked; nothing else repeats the nonce'd paths (no access lines).
    assert masked_keys(output) >= 2, output
    assert "uvicorn.access" not in output
    assert '" 404' not in output and "HTTP/1.1" not in output, output


def test_the_unfinished_response_line_is_dropped_only_for_a_stalled_client() -> None:
    import contextvars

    from gateway_project.logfilters import CLIENT_STALLED, StalledClientFilter

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, message, None, None)

    unfinished = "ASGI callable returned without completing response."
    check = StalledClientFilter()
    assert check.filter(record(unfinished))  # any other unfinished response is reported

    def in_a_stalled_request() -> tuple[bool, bool]:
        CLIENT_STALLED.set(True)
        return check.filter(record(unfinished)), check.filter(record("something else"))

    assert contextvars.copy_context().run(in_a_stalled_request) == (False, True)
    assert check.filter(record(unfinished))  # the flag stayed in that request's context
