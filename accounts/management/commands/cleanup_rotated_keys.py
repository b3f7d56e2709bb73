"""``manage.py cleanup_rotated_keys [--dry-run]``: revoke rotated keys past their grace."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import access_keys_expire_rotated


class Command(BaseCommand):
    help = (
        "Revoke rotated access keys whose grace period has ended and drop their cached "
        "metadata (the hourly beat task does the same)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only list the keys that would be revoked."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        prefixes = access_keys_expire_rotated(dry_run=dry_run)
        verb = "Would revoke" if dry_run else "Revoked"
        for prefix in prefixes:
            self.stdout.write(f"{verb} {prefix}")
        summary = f"{verb} {len(prefixes)} rotated keys past their grace period."
        self.stdout.write(summary if dry_run else self.style.SUCCESS(summary))
