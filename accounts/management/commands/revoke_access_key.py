"""``manage.py revoke_access_key PREFIX``: stop a key at once (within a second on every worker
when Redis is configured)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import access_key_get_by_prefix
from accounts.services import access_key_revoke


class Command(BaseCommand):
    help = "Revoke an access key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("prefix", help="The key's public prefix, e.g. gw_k3x9q2mb.")

    def handle(self, *args: Any, **options: Any) -> None:
        key = access_key_get_by_prefix(options["prefix"])
        if key is None:
            raise CommandError(f"No access key with prefix {options['prefix']!r}.")
        if access_key_revoke(access_key=key):
            self.stdout.write(f"Revoked {key.prefix} of {key.user.email}.")
        else:
            self.stdout.write(f"{key.prefix} was already revoked.")
