"""Logging levels set by an admin through Django Admin's own forms (add, change, delete), then
requests through the running gateway: the key's level beats its user's, which beats the
installation's, and a change takes effect at once in the process that made it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import Client

from accounts.models import User
from accounts.services import access_key_create
from proxy.testing.fake_upstream import FakeUpstream
from proxy.tests.conftest import GatewayServer, KeyHolder
from requestlog.models import LogLevelPolicy, RequestLog
from usage.models import UsageEvent
from usage.recording import flush_usage_events

pytestmark = pytest.mark.django_db(transaction=True)

ADD = "/admin/requestlog/loglevelpolicy/add/"
BODY = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hello"}],
}
HEADERS = {"x-api-key": "sk-ant-client-key-0123456789", "anthropic-version": "2023-06-01"}


@pytest.fixture
def admin_client(key_holder: KeyHolder) -> Client:
    admin = User.objects.create_superuser(email="admin@example.com", password="pw-0123456789")
    client = Client()
    client.force_login(admin)
    return client


def _submit(client: Client, url: str, data: dict[str, Any]) -> None:
    """Open the admin form, then post it as a browser would: every field of the form."""
    form = client.get(url)
    assert form.status_code == 200
    assert b'name="level"' in form.content
    response = client.post(url, {"user": "", "access_key": "", **data, "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]


def _policy_url(policy: LogLevelPolicy, action: str) -> str:
    return f"/admin/requestlog/loglevelpolicy/{policy.pk}/{action}/"


def _logged_level(gateway: GatewayServer, key: str) -> str:
    """The level the gateway logged one request with this key at ("off": no log row)."""
    response = httpx.post(gateway.key_url(key) + "/v1/messages", json=BODY, headers=HEADERS)
    assert response.status_code == 200, response.text
    flush_usage_events()
    request_id = response.headers["x-gateway-request-id"]
    assert UsageEvent.objects.filter(request_id=request_id).exists()
    log = RequestLog.objects.filter(request_id=request_id).first()
    if log is None:
        return "off"
    assert log.has_body == (log.level == "full")
    return log.level


def test_levels_set_in_the_admin_apply_key_then_user_then_installation(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake_upstream_settings: FakeUpstream,
    admin_client: Client,
    settings: Any,
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "off"
    user = key_holder.user
    _, sibling_key = access_key_create(user=user, label="desktop")
    other_user = User.objects.create_user(email="other@example.com")
    _, other_key = access_key_create(user=other_user, label="laptop")
    key = key_holder.plaintext

    assert _logged_level(gateway_server, key) == "off"

    # The user's level: every key of that user, no other user's.
    _submit(admin_client, ADD, {"user": str(user.pk), "level": "metadata"})
    user_policy = LogLevelPolicy.objects.get(user=user)
    assert _logged_level(gateway_server, key) == "metadata"
    assert _logged_level(gateway_server, sibling_key) == "metadata"
    assert _logged_level(gateway_server, other_key) == "off"

    # One key's level beats its user's, in both directions.
    _submit(admin_client, ADD, {"access_key": str(key_holder.key_id), "level": "full"})
    key_policy = LogLevelPolicy.objects.get(access_key_id=key_holder.key_id)
    assert _logged_level(gateway_server, key) == "full"
    assert _logged_level(gateway_server, sibling_key) == "metadata"
    _submit(
        admin_client,
        _policy_url(key_policy, "change"),
        {"access_key": str(key_holder.key_id), "level": "off"},
    )
    assert _logged_level(gateway_server, key) == "off"

    # The user's level beats the installation's, whichever is higher.
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    assert _logged_level(gateway_server, sibling_key) == "metadata"
    assert _logged_level(gateway_server, other_key) == "full"

    # Deleting a policy in the admin gives the next level down back.
    deleted = admin_client.post(_policy_url(key_policy, "delete"), {"post": "yes"})
    assert deleted.status_code == 302
    assert _logged_level(gateway_server, key) == "metadata"
    deleted = admin_client.post(_policy_url(user_policy, "delete"), {"post": "yes"})
    assert deleted.status_code == 302
    assert _logged_level(gateway_server, key) == "full"
    assert not LogLevelPolicy.objects.exists()


def test_the_admin_form_refuses_a_policy_for_both_a_user_and_a_key(
    key_holder: KeyHolder, admin_client: Client
) -> None:
    response = admin_client.post(
        ADD,
        {"user": str(key_holder.user.pk), "access_key": str(key_holder.key_id), "level": "full"},
    )
    assert response.status_code == 200
    assert b"Choose a user or an access key, not both." in response.content
    assert not LogLevelPolicy.objects.exists()
