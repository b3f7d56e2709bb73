"""The admin site names the product and links the admin API's documentation."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    admin = User.objects.create_superuser(email="root@example.com", password="pw-123456789")
    client = Client()
    client.force_login(admin)
    return client


def test_the_admin_names_the_product(staff_client: Client) -> None:
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert "LLM gateway administration" in page
    assert "<title>Users, keys, providers and usage | LLM gateway admin</title>" in page
    assert "Django administration" not in page
    assert "Django site admin" not in page


def test_the_login_page_names_the_product() -> None:
    page = Client().get(reverse("admin:login")).content.decode()
    assert "LLM gateway administration" in page
    assert "Django" not in page
    # No link for anonymous visitors.
    assert "/api/docs" not in page


def test_every_admin_page_links_the_api_docs(staff_client: Client) -> None:
    docs_url = reverse("admin_api:openapi-view")
    assert docs_url == "/api/docs"
    for name in ("admin:index", "admin:proxy_modelmapping_changelist", "admin:proxy_circuits"):
        page = staff_client.get(reverse(name)).content.decode()
        assert f'href="{docs_url}" id="admin-api-docs-link">API docs</a>' in page, name
    assert staff_client.get(docs_url).status_code == 200
