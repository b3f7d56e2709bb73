"""The front page and unknown paths: people go to the admin, API clients get JSON errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_the_front_page_redirects_to_the_admin(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/admin/nothing", "/v1beta/models", "/v2/messages"])
def test_unknown_api_paths_are_json(client: Client, path: str) -> None:
    response = client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert path in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "accept", "json_expected"),
    [
        ("get", "text/html,application/xhtml+xml", False),
        ("get", "application/json", True),
        ("post", "text/html", True),
    ],
)
def test_other_unknown_paths_answer_the_way_the_client_reads(
    client: Client, settings: Any, method: str, accept: str, json_expected: bool
) -> None:
    settings.DEBUG = False
    response = getattr(client, method)("/messages", HTTP_ACCEPT=accept)
    assert response.status_code == 404
    is_json = response["Content-Type"].startswith("application/json")
    assert is_json is json_expected
