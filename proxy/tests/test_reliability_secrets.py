"""Secrets hygiene: after a full request cycle with logging at DEBUG, no plaintext access key,
provider secret or client credential is in the logs, the database, Redis, the gateway's
responses or the admin's HTML.

Logs are checked twice: every record as emitted (message, arguments, extras, traceback), and
the lines the configured console handler writes in both formats (plain and JSON), built from
``settings.LOGGING`` so that its filters (the access-key mask) are the real ones. Access keys
travel in URL paths, which Django and uvicorn log: their public prefix may appear, the secret
part after it may not.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils.module_loading import import_string

from accounts.keycache import invalidate_key_metadata
from accounts.models import ProviderCredential, User
from accounts.services import access_key_create, provider_credential_set
from gateway_project import redis as shared_redis
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import report_counts
from usage.recording import flush_usage_events

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Secrets:
    """Every secret of the cycle, by name; ``access_key`` entries are checked by secret part."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value

    def found_in(self, text: str) -> list[str]:
        return [name for name, value in self.values.items() if value in text]


def _secret_part(access_key: str) -> str:
    """What follows the public prefix (``gw_xxxxxxxx``) of an access key."""
    return access_key[len("gw_xxxxxxxx") :]


class _Collector(logging.Handler):
    """Keeps every record whole, and what each configured output format makes of it."""

    def __init__(self, formatters: dict[str, logging.Formatter], filters: list[Any]) -> None:
        super().__init__(level=logging.DEBUG)
        self.raw: list[str] = []
        self.lines: list[str] = []
        self._formatters = formatters
        self._output_filters = filters

    def emit(self, record: logging.LogRecord) -> None:
        # The record as any handler would receive it, before the console handler's own filters.
        text = [record.getMessage(), repr(vars(record))]
        if record.exc_info:
            text.append(logging.Formatter().formatException(record.exc_info))
        self.raw.append("\n".join(text))
        # The console handler's output: its filters change the record, so work on a copy.
        copy = logging.makeLogRecord(vars(record))
        for output_filter in self._output_filters:
            output_filter.filter(copy)
        for formatter in self._formatters.values():
            self.lines.append(formatter.format(copy))


def _configured_console() -> tuple[dict[str, logging.Formatter], list[Any]]:
    """The console handler of settings.LOGGING: both formatters and its filters."""
    config = django_settings.LOGGING
    formatters: dict[str, logging.Formatter] = {}
    for name, spec in config["formatters"].items():
        spec = dict(spec)
        factory = spec.pop("()", None)
        if factory is None:
            formatters[name] = logging.Formatter(spec["format"])
        else:
            formatters[name] = import_string(factory)(**spec)
    filters = [
        import_string(config["filters"][name]["()"])()
        for name in config["handlers"]["console"].get("filters", [])
    ]
    return formatters, filters


@pytest.fixture
def captured_logs() -> Iterator[_Collector]:
    """Everything logged anywhere in the process (the gateway thread included), root at DEBUG.
    Loggers with a level of their own in settings.LOGGING (httpx, httpcore) keep it."""
    formatters, filters = _configured_console()
    collector = _Collector(formatters, filters)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector
    root.removeHandler(collector)
    root.setLevel(previous)


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


@dataclass
class Responses:
    """Everything the gateway and the admin sent back, as text."""

    texts: list[str] = field(default_factory=list)

    def keep(self, response: httpx.Response | Any) -> Any:
        headers = getattr(response, "headers", {})
        body = response.content.decode("utf-8", "replace")
        self.texts.append(f"{response.status_code}\n{dict(headers.items())}\n{body}")
        return response


def _proxy_cycle(
    gateway: GatewayServer,
    plaintext: str,
    fake: FakeUpstream,
    known: Secrets,
    responses: Responses,
) -> int:
    url = gateway.key_url(plaintext)
    api_key = known.add("client x-api-key", "sk-ant-api03-client-" + secrets.token_urlsafe(24))
    bearer = known.add("client bearer token", "sk-ant-oat01-" + secrets.token_urlsafe(24))
    sent = 0

    def post(path: str = "/v1/messages", headers: dict[str, str] | None = None, **kw: Any) -> Any:
        nonlocal sent
        sent += 1
        # This test is about secrets, not speed: a generous bound, so that a slow moment of a
        # shared CI machine is not a failure (the latency tests are elsewhere).
        return responses.keep(httpx.post(url + path, headers=headers or {}, timeout=30, **kw))

    # Direct: the client's own key, its bearer token, then none (the stored credential).
    for stream in (False, True):
        post(json={**BODY, "stream": stream}, headers={"x-api-key": api_key})
    post(json=BODY, headers={"authorization": f"Bearer {bearer}"})
    post(json=BODY)
    post("/v1/messages/count_tokens", json={"model": MODEL, "messages": BODY["messages"]})
    responses.keep(httpx.get(url + "/v1/models", headers={"x-api-key": api_key}))

    # Fallback through both Bedrock modes, streamed and not, then both upstreams failing.
    for mode in ("invoke", "converse"):
        ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
        invalidate_key_metadata()
        for stream in (False, True):
            fake.add_fault("anthropic", HttpError(status=529))
            post(json={**BODY, "stream": stream}, headers={"x-api-key": api_key})
    fake.add_fault("anthropic", HttpError(status=500))
    fake.add_fault("bedrock", HttpError(status=403, message="The security token is invalid"))
    post(json=BODY, headers={"x-api-key": api_key})

    # Errors of the gateway's own.
    post(content=b"{broken", headers={"x-api-key": api_key})
    post("/v1/nothing-here", json=BODY, headers={"x-api-key": api_key})
    forged = plaintext[:12] + secrets.token_urlsafe(32)
    known.add("forged access key", forged)
    responses.keep(
        httpx.post(
            gateway.key_url(forged) + "/v1/messages", json=BODY, headers={"x-api-key": api_key}
        )
    )
    return sent


def _admin_pages(user: User, key_id: int, responses: Responses) -> None:
    admin = User.objects.create_superuser(email="root@example.com", password="unused-password")
    client = Client()
    client.force_login(admin)
    credential_ids = list(ProviderCredential.objects.values_list("id", flat=True))
    urls = [
        reverse("admin:accounts_providercredential_changelist"),
        *[reverse("admin:accounts_providercredential_change", args=[pk]) for pk in credential_ids],
        reverse("admin:accounts_providercredential_add"),
        reverse("admin:accounts_accesskey_changelist"),
        reverse("admin:accounts_accesskey_change", args=[key_id]),
        reverse("admin:accounts_user_change", args=[user.id]),
        reverse("admin:usage_usageevent_changelist"),
        reverse("admin:usage_usageaggregate_changelist"),
        reverse("admin:usage_dashboard"),
        reverse("admin:usage_dashboard_user", args=[user.id]),
        reverse("admin:usage_dashboard_key", args=[key_id]),
        reverse("admin:proxy_circuits"),
        "/api/admin/usage",
        "/metrics",
        "/healthz",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        responses.keep(response)


def _database_text() -> Iterator[tuple[str, str]]:
    """(table, text) for every value of every row of every table."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes):
                        yield table, value.decode("latin-1")
                    elif value is not None:
                        yield table, str(value)


def _redis_text() -> Iterator[str]:
    client = shared_redis.sync_client()
    if client is None:
        return
    for key in client.scan_iter(count=500):
        yield key.decode("latin-1")
        if client.type(key) == b"string":
            yield (client.get(key) or b"").decode("latin-1")


def test_no_secret_in_logs_database_redis_responses_or_admin_html(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    captured_logs: _Collector,
    capsys: pytest.CaptureFixture[str],
) -> None:
    known = Secrets()
    known.add("access key (secret part)", _secret_part(key_holder.plaintext))
    anthropic = known.add(
        "anthropic credential", "sk-ant-api03-stored-" + secrets.token_urlsafe(24)
    )
    bedrock = known.add("bedrock credential", "ABSK" + secrets.token_urlsafe(40))
    provider_credential_set(provider="anthropic", secret=anthropic, user=key_holder.user)
    provider_credential_set(provider="bedrock", secret=bedrock, region="us-west-2")
    # A second key made the way the admin makes them.
    _, second = access_key_create(user=key_holder.user, label="second")
    known.add("second access key (secret part)", _secret_part(second))

    responses = Responses()
    sent = _proxy_cycle(gateway_server, key_holder.plaintext, fake, known, responses)
    flush_usage_events()
    _admin_pages(key_holder.user, key_holder.key_id, responses)

    # The cycle did go where it should: the secrets reached the upstreams, so their absence
    # below means something.
    seen = [value for request in fake.requests for _, value in request.headers]
    assert f"Bearer {bedrock}" in seen and anthropic in seen

    leaks: dict[str, list[str]] = {}
    for text in captured_logs.raw:
        for name in known.found_in(text):
            if name not in ("access key (secret part)", "forged access key"):
                leaks.setdefault("log records", []).append(name)
    for text in captured_logs.lines:
        for name in known.found_in(text):
            leaks.setdefault("log output", []).append(f"{name}: {text[:300]}")
    for table, text in _database_text():
        for name in known.found_in(text):
            leaks.setdefault("database", []).append(f"{name} in {table}")
    for text in _redis_text():
        for name in known.found_in(text):
            leaks.setdefault("redis", []).append(name)
    for text in responses.texts:
        for name in known.found_in(text):
            leaks.setdefault("responses", []).append(f"{name}: {text[:300]}")
    report_counts(
        capsys,
        "secrets hygiene",
        requests=sent,
        log_records=len(captured_logs.raw),
        responses_checked=len(responses.texts),
        leaks=sum(len(found) for found in leaks.values()),
    )
    assert not leaks, json.dumps(leaks, indent=1)[:4000]
    assert captured_logs.raw  # logging did run at DEBUG


def test_the_throttle_never_logs_the_keys_it_refuses(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    captured_logs: _Collector,
    settings: Any,
) -> None:
    settings.GATEWAY_AUTH_FAILURE_LIMIT = 3
    guesses = [f"gw_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}" for _ in range(6)]
    statuses = [
        httpx.post(gateway_server.key_url(guess) + "/v1/messages", json=BODY).status_code
        for guess in guesses
    ]
    assert statuses == [401, 401, 401, 429, 429, 429]
    secret_parts = [_secret_part(guess) for guess in guesses]
    for text in captured_logs.lines:
        assert not any(part in text for part in secret_parts), text[:300]
    throttle_records = [text for text in captured_logs.raw if "'name': 'proxy.throttle'" in text]
    for text in throttle_records:
        assert not any(guess[:12] in text for guess in guesses), text[:300]
    # A valid key from the same address still works.
    ok = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json=BODY,
        headers={"x-api-key": "sk-ant-client"},
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("case", ["unknown-route", "unexpected-error"])
def test_django_request_extras_show_no_access_key(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    captured_logs: _Collector,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    """Django logs every 4xx/5xx it sees with the request object as an extra."""
    path = "/v1/messages"
    if case == "unknown-route":
        path = "/v1/nothing-here"
    else:
        from proxy import services

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(services, "make_plan", broken)
    response = httpx.post(gateway_server.key_url(key_holder.plaintext) + path, json=BODY)
    assert response.status_code in (404, 500)
    assert captured_logs.lines  # Django did log it
    secret_part = _secret_part(key_holder.plaintext)
    for text in captured_logs.lines:
        assert secret_part not in text, text[:500]


def test_keys_and_tokens_elsewhere_in_urls_and_admin_passwords_stay_out(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    captured_logs: _Collector,
    settings: Any,
) -> None:
    """Keys outside /ak/ (another case, the first path segment, a ?key= parameter), admin API
    tokens (in the query, as a bearer) and the passwords of failed admin logins."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    token = "admin-token-" + secrets.token_urlsafe(24)
    settings.GATEWAY_ADMIN_API_TOKEN = token
    key = key_holder.plaintext
    base = gateway_server.base_url
    wrong_token = token + "x"  # refused, so Django logs the request
    statuses = [
        httpx.get(f"{base}/AK/{key}/v1/models").status_code,
        httpx.post(f"{base}/{key}/v1/messages", json=BODY).status_code,
        httpx.get(f"{base}/v1beta/models?key={key}&alt=sse").status_code,
        httpx.get(f"{base}/api/admin/usage?token={wrong_token}").status_code,
        httpx.get(
            f"{base}/api/admin/usage", headers={"authorization": f"Bearer {wrong_token}"}
        ).status_code,
    ]
    assert all(status >= 400 for status in statuses), statuses
    User.objects.create_superuser(email="root@example.com", password="the-right-password")
    password = "wrong-" + secrets.token_urlsafe(16)
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(django_settings.AXES_FAILURE_LIMIT + 1):
        client.post("/admin/login/", {"username": "root@example.com", "password": password})

    known = Secrets()
    known.add("access key (secret part)", _secret_part(key))
    known.add("admin API token", token)
    known.add("admin password", password)
    assert len(captured_logs.lines) >= 10  # the refusals and the login failures were logged
    leaks = [
        f"{name}: {text[:300]}" for text in captured_logs.lines for name in known.found_in(text)
    ]
    leaks += [
        f"{name} in {table}" for table, text in _database_text() for name in known.found_in(text)
    ]
    assert not leaks, json.dumps(leaks, indent=1)[:4000]
