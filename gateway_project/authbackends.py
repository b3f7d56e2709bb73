"""The admin login lockout as an authentication backend.

django-axes' backend refuses a locked-out username and client address before any password is
checked. It needs the request for the address; Django's admin login form always passes it.
Authentications without a request (the test client's ``login()``, a script calling
``authenticate()``) have no address to lock: they skip the check and go on to the password
backend, where django-axes would raise instead.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginLockoutBackend(AxesStandaloneBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username=username, password=password, **kwargs)
        return None
