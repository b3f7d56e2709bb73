"""Prometheus metrics, the request-id log context, and the JSON log formatter's extras.

Metrics are plain prometheus_client objects. With several worker processes, set
GATEWAY_METRICS_DIR to an empty directory so that a scrape sees all workers, not one.
The /metrics endpoint is not public: it needs GATEWAY_METRICS_TOKEN as a bearer token, or,
without a token configured, a loopback client talking to the gateway directly
(``gateway_project.access.metrics_access_allowed``).

Gauges read at scrape time come from the apps that own them, through ``before_scrape`` hooks
(usage.recording reports its spool's depth that way): this module imports no app, so apps can
import their metrics from here without a cycle.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from gateway_project.access import metrics_access_allowed

# prometheus_client picks its storage when imported: with several worker processes, metrics go
# to files in GATEWAY_METRICS_DIR (an empty directory per start, e.g. a tmpfs) that a scrape of
# any worker adds up.
if settings.GATEWAY_METRICS_DIR:
    Path(settings.GATEWAY_METRICS_DIR).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", settings.GATEWAY_METRICS_DIR)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess  # noqa: E402

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "gateway_requests_total",
    "Proxied requests by answering provider and HTTP status class.",
    ["provider", "status_class", "streamed"],
)
LATENCY = Histogram(
    "gateway_request_duration_seconds",
    "Time from request to last byte, by answering provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
FIRST_BYTE = Histogram(
    "gateway_time_to_first_byte_seconds",
    "Time from request to the first byte sent to the client, by answering provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
FALLBACKS = Counter(
    "gateway_fallbacks_total", "Requests answered by Bedrock, by fallback reason.", ["reason"]
)
NO_FALLBACK = Counter(
    "gateway_fallback_unavailable_total",
    "Anthropic failures that could not fall back, by reason.",
    ["reason"],
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total", "Upstream failures by upstream and kind.", ["upstream", "kind"]
)
TOKENS = Counter("gateway_tokens_total", "Tokens by provider and kind.", ["provider", "kind"])
CIRCUIT_OPEN = Gauge(
    "gateway_circuits_open",
    "Circuits currently open in this worker.",
    multiprocess_mode="livesum",
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures_total", "Requests with an unusable access key, by outcome.", ["outcome"]
)
USAGE_SPOOL_DEPTH = Gauge(
    "gateway_usage_spool_depth",
    "Usage events waiting in the disk spool for the database.",
    multiprocess_mode="max",
)
USAGE_EVENTS = Counter(
    "gateway_usage_events_total", "Usage events by outcome of their write.", ["outcome"]
)


class RequestIdFilter(logging.Filter):
    """Adds the current proxied request's id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


_scrape_hooks: list[Callable[[], None]] = []
_logger = logging.getLogger(__name__)


def before_scrape(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run before every scrape (to set gauges that are read, not counted).
    Usable as a decorator; registering the same function twice runs it once."""
    if hook not in _scrape_hooks:
        _scrape_hooks.append(hook)
    return hook


def _run_scrape_hooks() -> None:
    for hook in _scrape_hooks:
        try:
            hook()
        except Exception:  # one broken gauge must not cost the scrape every other metric
            _logger.exception("metrics: %s failed", getattr(hook, "__qualname__", hook))


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_access_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    _run_scrape_hooks()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return HttpResponse(payload, content_type=CONTENT_TYPE_LATEST)
