"""Admin login lockout (django-axes): repeated wrong passwords lock the account for that client
address, whatever the password afterwards, for the cool-off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db

EMAIL = "root@example.com"
PASSWORD = "right-password-123"
LOGIN_URL = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Dozens of logins per test: the production hasher's cost is not what is tested here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser(email=EMAIL, password=PASSWORD)


def login(client: Client, password: str, **extra: str) -> Any:
    return client.post(
        LOGIN_URL, {"username": EMAIL, "password": password, "next": "/admin/"}, **extra
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_configured_limit_is_the_default(settings: Any) -> None:
    assert settings.AXES_FAILURE_LIMIT == 10
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_CLIENT_IP_CALLABLE == "gateway_project.access.client_ip"


def test_after_the_limit_even_the_right_password_is_refused(
    admin_user: User, settings: Any
) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    client = Client(REMOTE_ADDR="203.0.113.5")
    statuses = [login(client, f"wrong-{n}").status_code for n in range(limit)]
    # Wrong passwords get the form again until the limit; the last one is already refused.
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert statuses[-1] == 429
    refused = login(client, PASSWORD)
    assert refused.status_code == 429
    assert b"too many login attempts" in refused.content
    assert not logged_in(client)
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_below_the_limit_the_right_password_works_and_resets_the_count(
    admin_user: User, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="203.0.113.5")
    for n in range(2):
        assert login(client, f"wrong-{n}").status_code == 200
    assert login(client, PASSWORD).status_code == 302
    assert logged_in(client)
    client.logout()
    # The success forgot the failures: two more wrong passwords do not lock.
    for n in range(2):
        assert login(client, f"wrong-again-{n}").status_code == 200
    assert login(client, PASSWORD).status_code == 302


def test_the_lockout_is_per_account_and_address(admin_user: User, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    attacker = Client(REMOTE_ADDR="198.51.100.66")
    for n in range(3):
        login(attacker, f"wrong-{n}")
    assert login(attacker, PASSWORD).status_code == 429
    colleague = Client(REMOTE_ADDR="203.0.113.5")
    assert login(colleague, PASSWORD).status_code == 302


def test_behind_a_proxy_the_trusted_entry_is_the_address(admin_user: User, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    settings.GATEWAY_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.GATEWAY_TRUSTED_PROXY_HOPS = 1
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    # Rotating the entries the client writes itself does not reset the count.
    for n in range(3):
        login(proxy, "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 198.51.100.66")
    assert login(proxy, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.66").status_code == 429
    assert AccessAttempt.objects.get().ip_address == "198.51.100.66"
    # Another client behind the same proxy is not affected.
    other = Client(REMOTE_ADDR="10.0.0.2")
    assert login(other, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 302


def test_the_lock_lifts_after_the_cool_off(admin_user: User, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    client = Client(REMOTE_ADDR="203.0.113.5")
    for n in range(2):
        login(client, f"wrong-{n}")
    assert login(client, PASSWORD).status_code == 429
    cool_off = timedelta(hours=settings.AXES_COOLOFF_TIME)
    attempt = AccessAttempt.objects.get()
    attempt.attempt_time -= cool_off + timedelta(minutes=1)
    attempt.save(update_fields=["attempt_time"])
    assert login(client, PASSWORD).status_code == 302


def test_the_lockout_admin_is_read_only(admin_user: User, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    for n in range(2):
        login(Client(REMOTE_ADDR="198.51.100.66"), f"wrong-{n}")
    client = Client()
    client.force_login(admin_user)
    assert client.get(reverse("admin:axes_accessattempt_add")).status_code == 403
    attempt = AccessAttempt.objects.get()
    page = client.get(reverse("admin:axes_accessattempt_change", args=[attempt.pk]))
    assert page.status_code == 200
    assert b'name="username"' not in page.content  # shown, not editable


def test_logins_without_a_request_skip_the_lockout(admin_user: User, settings: Any) -> None:
    # The test client's login() and scripts call authenticate() without a request: django-axes
    # alone would raise; here the password decides, and nothing is counted.
    settings.AXES_FAILURE_LIMIT = 1
    client = Client()
    assert client.login(username=EMAIL, password="wrong") is False
    assert client.login(username=EMAIL, password=PASSWORD) is True
    assert not AccessAttempt.objects.exists()


def test_the_lockout_backend_comes_first(settings: Any) -> None:
    assert settings.AUTHENTICATION_BACKENDS[0] == "gateway_project.authbackends.LoginLockoutBackend"
