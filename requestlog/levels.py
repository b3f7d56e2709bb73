"""Which logging level applies to a request: the access key's, else its user's, else the
installation's (GATEWAY_REQUEST_LOG_LEVEL).

The proxy asks on every request, so the answer comes from an in-process snapshot of the
``LogLevelPolicy`` rows, never from a query on the event loop. A daemon thread reloads the
snapshot every few seconds (and ``log_levels_reload`` at once, after a change in this
process): a level set in the admin takes effect everywhere within ``REFRESH_SECONDS``. Until a
process has loaded its first snapshot, requests get the installation's level.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0

OFF = "off"
METADATA = "metadata"
FULL = "full"

_by_key: dict[int, str] = {}
_by_user: dict[int, str] = {}
_refresher: threading.Thread | None = None
_refresher_lock = threading.Lock()


def log_level_for(*, key_id: int | None, user_id: int | None) -> str:
    """The level for a request with this key and user (two dict lookups)."""
    if _refresher is None:
        _start_refresher()
    if _by_key or _by_user:
        level = _by_key.get(key_id or 0) or _by_user.get(user_id or 0)
        if level:
            return level
    return str(settings.GATEWAY_REQUEST_LOG_LEVEL)


def log_levels_reload() -> None:
    """Load the policies now (in the calling thread; it must be allowed to query)."""
    global _by_key, _by_user
    from requestlog.models import LogLevelPolicy

    by_key: dict[int, str] = {}
    by_user: dict[int, str] = {}
    for key_id, user_id, level in LogLevelPolicy.objects.values_list(
        "access_key_id", "user_id", "level"
    ):
        if key_id is not None:
            by_key[key_id] = level
        elif user_id is not None:
            by_user[user_id] = level
    # Replaced whole: readers on the event loop see the old or the new snapshot, never half.
    _by_key, _by_user = by_key, by_user


def _refresh_forever() -> None:
    while True:
        try:
            log_levels_reload()
        except Exception as exc:  # the database may be away: keep the last snapshot
            logger.debug("request log levels: reload failed: %s", exc)
        finally:
            connection.close()
        time.sleep(REFRESH_SECONDS)


def _start_refresher() -> None:
    global _refresher
    with _refresher_lock:
        if _refresher is not None:
            return
        thread = threading.Thread(target=_refresh_forever, name="log-levels", daemon=True)
        thread.start()
        _refresher = thread
