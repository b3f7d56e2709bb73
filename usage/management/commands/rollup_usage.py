"""``manage.py rollup_usage [--rebuild [--since ISO]]``: roll usage events up, or rebuild."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from usage.locks import LockBusy, LockLost
from usage.rollup import (
    DEFAULT_BATCH_SIZE,
    RollupError,
    usage_aggregates_rebuild,
    usage_rollup,
)


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise CommandError(
            f"--since {text!r} is not an ISO 8601 date or date-time (e.g. 2026-03-01 or "
            "2026-03-01T09:00:00+09:00)"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Add new usage events to the aggregates (what the minutely beat task does). With "
        "--rebuild, recompute the aggregates from raw events instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Delete and recompute aggregates from raw events, day by day, with the "
            "current prices; reaches back as far as raw events have not been pruned.",
        )
        parser.add_argument(
            "--since",
            metavar="ISO",
            help="With --rebuild: start at this date (rounded down to its UTC day). "
            "ISO 8601; UTC when no offset is given.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Events per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rebuild: bool = options["rebuild"]
        since = parse_moment(options["since"]) if options["since"] is not None else None
        if since is not None and not rebuild:
            raise CommandError(
                "--since only applies to --rebuild: the rollup itself always takes every new "
                "event, however old"
            )
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        progress = self.stdout.write if options["verbosity"] >= 1 else None
        try:
            if rebuild:
                rebuilt = usage_aggregates_rebuild(since=since, progress=progress)
                if rebuilt.start is None:
                    self.stdout.write("Nothing to rebuild: no events and no aggregates.")
                    return
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Rebuilt aggregates from {rebuilt.start:%Y-%m-%d} (UTC): "
                        f"{rebuilt.events} events over {rebuilt.days} days."
                    )
                )
                return
            report = usage_rollup(batch_size=options["batch_size"], progress=progress)
        except LockBusy as exc:
            raise CommandError(
                "Another rollup, rebuild or prune is running; try again in a minute."
            ) from exc
        except LockLost as exc:
            raise CommandError(
                f"{exc}: another job may have started; run the command again"
            ) from exc
        except RollupError as exc:
            raise CommandError(str(exc)) from exc
        for (provider, model), count in sorted(report.unpriced.items()):
            self.stdout.write(
                self.style.WARNING(
                    f"{count} events of {provider}/{model or '<empty>'} have no price: cost 0"
                )
            )
        if report.set_aside:
            self.stdout.write(
                self.style.ERROR(
                    f"{len(report.set_aside)} events could not be added and were set aside "
                    "(admin: Usage › Dead-letter usage events)."
                )
            )
        self.stdout.write(
            self.style.SUCCESS(f"Rolled up {report.events} events in {report.batches} batches.")
        )
