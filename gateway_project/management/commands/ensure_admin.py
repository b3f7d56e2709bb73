"""`manage.py ensure_admin`: the first admin account of a fresh installation.

When the database has no superuser yet, one is created (email ``GATEWAY_ADMIN_EMAIL``, default
``admin@localhost``) with a random password that is stored, readable by its owner only, in
``GATEWAY_DATA_DIR/secrets/admin_password``. While that file exists and still holds the
password, every start prints the login; once the admin changes the password (or deletes the
file) nothing secret is printed any more. ``run_gateway`` calls this on every start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from gateway_project.envparse import write_private_file

DEFAULT_ADMIN_EMAIL = "admin@localhost"


@dataclass(frozen=True, slots=True)
class AdminLogin:
    """What a start reports about the admin account."""

    email: str
    password_file: Path
    created: bool
    # The stored password while it still works; None once it was changed or the file is gone.
    password: str | None
    # Set when no account could be created because the email belongs to a non-admin user.
    conflict: bool = False


def admin_email() -> str:
    """GATEWAY_ADMIN_EMAIL, checked like the settings check theirs."""
    email = str(settings.GATEWAY_ADMIN_EMAIL).strip() or DEFAULT_ADMIN_EMAIL
    # "admin@localhost" has no dot in its domain, which validate_email refuses; check the rest.
    if email != DEFAULT_ADMIN_EMAIL:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"GATEWAY_ADMIN_EMAIL: not an email address: {email!r}") from exc
    return email


def admin_password_file() -> Path:
    return Path(settings.GATEWAY_DATA_DIR) / "secrets" / "admin_password"


def admin_account_ensure(*, email: str, password_file: Path) -> AdminLogin:
    """Create the first superuser when there is none; report the stored login when it works."""
    user_model = get_user_model()
    if not user_model.objects.filter(is_superuser=True).exists():
        if user_model.objects.filter(email__iexact=email).exists():
            return AdminLogin(
                email=email,
                password_file=password_file,
                created=False,
                password=None,
                conflict=True,
            )
        password = secrets.token_urlsafe(18)
        # The file first: an account whose password was never written down is unreachable.
        password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(password_file, password + "\n", replace=True)
        with transaction.atomic():
            user_model.objects.create_superuser(email=email, password=password)
        return AdminLogin(email=email, password_file=password_file, created=True, password=password)

    stored = _read_password(password_file)
    if stored is not None:
        user = user_model.objects.filter(email__iexact=email, is_superuser=True).first()
        if user is None or not user.check_password(stored):
            stored = None
    return AdminLogin(email=email, password_file=password_file, created=False, password=stored)


def _read_password(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def describe_admin_login(login: AdminLogin, *, admin_url: str) -> list[str]:
    """Lines for the start banner."""
    lines = [f"Admin:     {admin_url}"]
    if login.conflict:
        lines.append(
            f"No admin account was created: {login.email} exists but is not a superuser. "
            "Create one with: manage.py createsuperuser"
        )
        return lines
    if login.password is None:
        if login.password_file.exists():
            lines.append(
                f"Login:     {login.email} (the password in {login.password_file} was changed; "
                "delete that file)"
            )
        return lines
    lines.append(f"Login:     {login.email}")
    lines.append(f"Password:  {login.password}")
    lines.append(
        f"           (kept in {login.password_file}; change it in the admin under Users, "
        "then delete that file)"
    )
    return lines


class Command(BaseCommand):
    help = (
        "Create the first admin account (superuser) when there is none, with a random password "
        "stored in GATEWAY_DATA_DIR/secrets/admin_password, and print how to log in."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--admin-url",
            default="/admin/",
            help="The admin address to print (default: /admin/).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        login = admin_account_ensure(email=admin_email(), password_file=admin_password_file())
        if login.created:
            self.stdout.write(f"Created the admin account {login.email}.")
        for line in describe_admin_login(login, admin_url=options["admin_url"]):
            self.stdout.write(line)
