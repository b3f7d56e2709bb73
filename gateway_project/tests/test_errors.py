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


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "host", "accept", "json_expected"),
    [
        ("post", "/api/admin/credentials/1/enable", "", "text/html", True),  # an empty Host
        ("get", "/api/admin/usage", "evil.example", "*/*", True),  # outside ALLOWED_HOSTS
        ("get", "/admin/login/", "evil.example", "text/html,application/xhtml+xml", False),
    ],
)
def test_a_request_django_refuses_is_answered_the_way_the_client_reads(
    client: Client,
    settings: Any,
    method: str,
    path: str,
    host: str,
    accept: str,
    json_expected: bool,
) -> None:
    """Found by the admin API's schema fuzzing: a Host Django refuses got its HTML page on the
    API, whose documented errors are JSON."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    response = getattr(client, method)(path, HTTP_HOST=host, HTTP_ACCEPT=accept)
    assert response.status_code == 400
    if json_expected:
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == {
            "type": "invalid_request_error",
            "message": "Bad request.",
        }
    else:
        assert response["Content-Type"].startswith("text/html")
