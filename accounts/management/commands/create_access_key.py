"""``manage.py create_access_key EMAIL``: a new access key for a user.

The plaintext key is printed alone on the last line of stdout (scripts take ``tail -n 1``); it is
never stored and cannot be shown again.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import AccountsError, access_key_create, user_get_or_create


class Command(BaseCommand):
    help = "Create an access key for a user; prints the key alone on the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("email", help="The key holder's email address.")
        parser.add_argument("--label", default="", help="A name for the key, e.g. 'laptop'.")
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user if there is none."
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            metavar="N",
            help="The key stops working after N days (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days: int | None = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError(f"--expires-in-days must be a positive number of days, not {days}.")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        try:
            user, created = user_get_or_create(
                email=options["email"], create=options["create_user"]
            )
            key, plaintext = access_key_create(
                user=user, label=options["label"], expires_at=expires_at
            )
        except AccountsError as exc:
            raise CommandError(str(exc)) from exc
        if created:
            self.stdout.write(f"Created user {user.email}.")
        expiry = f", expires {expires_at:%Y-%m-%d %H:%M %Z}" if expires_at else ""
        self.stdout.write(f"Created access key {key.prefix} for {user.email}{expiry}.")
        self.stdout.write("Copy the key below now; it cannot be shown again.")
        self.stdout.write(plaintext)
