"""``manage.py prune_request_logs``: delete request bodies and media past their retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from requestlog.services import request_logs_maintain
from usage.locks import LockBusy


class Command(BaseCommand):
    help = (
        "Delete request bodies (and media no body refers to) older than "
        "GATEWAY_LOG_BODY_RETENTION_DAYS, and request logs older than "
        "GATEWAY_USAGE_RETENTION_DAYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            report = request_logs_maintain(batch_size=options["batch_size"])
        except LockBusy as exc:
            raise CommandError("Another prune is running; try again later.") from exc
        self.stdout.write(
            f"Deleted {report.bodies} bodies, {report.media} media, {report.logs} logs."
        )
