"""``manage.py rotate_access_key PREFIX``: replace a key by a new one.

The old key keeps working until its grace period ends; the new plaintext key is printed alone on
the last line of stdout.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import access_key_get_by_prefix
from accounts.services import AccountsError, access_key_rotate


class Command(BaseCommand):
    help = "Rotate an access key; prints the new key alone on the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("prefix", help="The key's public prefix, e.g. gw_k3x9q2mb.")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            metavar="H",
            help="How long the old key keeps working (default: GATEWAY_KEY_ROTATION_GRACE_HOURS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours: float | None = options["grace_hours"]
        if hours is not None and not 0 <= hours <= 24 * 365:
            raise CommandError(f"--grace-hours must be between 0 and 8760, not {hours}.")
        key = access_key_get_by_prefix(options["prefix"])
        if key is None:
            raise CommandError(f"No access key with prefix {options['prefix']!r}.")
        grace = timedelta(hours=hours) if hours is not None else None
        try:
            new, plaintext = access_key_rotate(access_key=key, grace=grace)
        except AccountsError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Rotated {key.prefix} to {new.prefix} for {key.user.email}; "
            f"{key.prefix} keeps working until {key.grace_ends_at:%Y-%m-%d %H:%M %Z}."
        )
        self.stdout.write("Copy the new key below now; it cannot be shown again.")
        self.stdout.write(plaintext)
