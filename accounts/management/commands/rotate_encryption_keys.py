"""``manage.py rotate_encryption_keys``: re-encrypt every stored secret under the first key of
GATEWAY_ENCRYPTION_KEYS.

Rotation of the encryption key: put the new key first, keep the old ones after it, run this, then
remove the old keys. Exits non-zero, naming them, when some secrets cannot be decrypted.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.services import encryption_keys_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored provider secret under the current first encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        report = encryption_keys_rotate()
        self.stdout.write(f"Re-encrypted {report.rotated} secret(s); {len(report.failed)} failed.")
        if report.failed:
            raise CommandError(
                f"{len(report.failed)} secret(s) could not be decrypted with the configured "
                "keys (add the key they were encrypted with to GATEWAY_ENCRYPTION_KEYS, or set "
                "them again): " + "; ".join(report.failed)
            )
