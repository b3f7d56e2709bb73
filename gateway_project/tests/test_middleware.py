"""The admin API's query parameters take one value each, without NUL characters."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_a_parameter_given_twice_is_a_400_naming_it(admin_client: Client) -> None:
    response = admin_client.get("/api/admin/usage?model=a&model=b")
    assert response.status_code == 400
    assert response.json() == {"detail": "model: give it once.", "param": "model"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/credentials?provider=%C3%B6%00%3A",
        "/api/admin/logs?model=gpt%00",
        "/api/admin/usage?provider=openai%00",
    ],
)
def test_a_nul_in_a_value_is_a_400_naming_the_parameter(admin_client: Client, path: str) -> None:
    # On PostgreSQL this reached the credential filter and came back as a 500.
    response = admin_client.get(path)
    assert response.status_code == 400
    name = path.split("?")[1].split("=")[0]
    assert response.json() == {"detail": f"{name}: NUL characters are not allowed.", "param": name}


@pytest.mark.django_db
def test_a_nul_in_a_name_is_refused_too(admin_client: Client) -> None:
    response = admin_client.get("/api/admin/usage?mo%00del=a")
    assert response.status_code == 400
    assert response.json()["param"] == "model"


@pytest.mark.django_db
def test_parameters_given_once_pass(admin_client: Client) -> None:
    assert admin_client.get("/api/admin/usage?model=a&provider=openai").status_code == 200


@pytest.mark.django_db
def test_other_paths_are_not_concerned(admin_client: Client) -> None:
    response = admin_client.get("/admin/accounts/user/?email=a&email=b")
    assert response.status_code in (200, 302)
