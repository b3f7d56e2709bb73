"""``manage.py prune_usage_events [--dry-run]``: delete rolled-up events past the retention."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from usage.locks import LockBusy, LockLost
from usage.rollup import DEFAULT_PRUNE_BATCH_SIZE, RollupError, usage_events_prune


class Command(BaseCommand):
    help = (
        "Delete raw usage events older than GATEWAY_USAGE_RETENTION_DAYS (counted from a UTC "
        "midnight) once they are rolled up. Aggregates keep their totals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_PRUNE_BATCH_SIZE,
            help=f"Events deleted per statement (default {DEFAULT_PRUNE_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        retention_days = settings.GATEWAY_USAGE_RETENTION_DAYS
        progress = self.stdout.write if options["verbosity"] >= 1 else None
        try:
            report = usage_events_prune(
                retention_days=retention_days,
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                progress=progress,
            )
        except LockBusy as exc:
            raise CommandError("A rebuild or another prune is running; try again later.") from exc
        except LockLost as exc:
            raise CommandError(f"{exc}; run the command again") from exc
        except RollupError as exc:
            raise CommandError(str(exc)) from exc
        before = f"{report.cutoff:%Y-%m-%d %H:%M} UTC ({retention_days} days retention)"
        if report.dry_run:
            self.stdout.write(
                f"Would delete {report.deleted} events that occurred before {before}."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Deleted {report.deleted} events that occurred before {before}."
                )
            )
        if report.kept_pending:
            self.stdout.write(
                f"Kept {report.kept_pending} older events that are not rolled up yet."
            )
