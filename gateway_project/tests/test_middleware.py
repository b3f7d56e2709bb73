"""The admin API's query parameters take one value each."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_a_parameter_given_twice_is_a_400_naming_it(admin_client: Client) -> None:
    response = admin_client.get("/api/admin/usage?model=a&model=b")
    assert response.status_code == 400
    assert response.json() == {"detail": "model: give it once.", "param": "model"}


@pytest.mark.django_db
def test_parameters_given_once_pass(admin_client: Client) -> None:
    assert admin_client.get("/api/admin/usage?model=a&provider=openai").status_code == 200


@pytest.mark.django_db
def test_other_paths_are_not_concerned(admin_client: Client) -> None:
    response = admin_client.get("/admin/accounts/user/?email=a&email=b")
    assert response.status_code in (200, 302)
