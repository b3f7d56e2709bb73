"""The dashboard in a real headless Chromium: the charts must draw, not only be in the markup.

A live server serves the page; a test-only login URL sets the staff session inside Chromium (its
command line cannot log in) and redirects to the dashboard, and the screenshot's pixels are
checked for the providers' chart colours. Skipped when Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

import secrets
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.models import User
from gateway_project.urls import urlpatterns as project_urlpatterns
from usage.dashboard.charts import PROVIDER_COLORS, provider_color
from usage.tests.test_selectors import Event, aggregates_create

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.urls(__name__)

# One-time tokens of this test module's login URL: token -> user id.
_LOGIN_TOKENS: dict[str, int] = {}


def _test_login(request: HttpRequest, token: str) -> HttpResponse:
    user_id = _LOGIN_TOKENS.pop(token, None)
    target = request.GET.get("next", "/admin/")
    if user_id is None or not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return HttpResponseNotFound("unknown token")
    login(
        request, User.objects.get(pk=user_id), backend="django.contrib.auth.backends.ModelBackend"
    )
    return HttpResponseRedirect(target)


urlpatterns: list[URLPattern | URLResolver] = [
    path("test-login/<str:token>/", _test_login),
    *project_urlpatterns,
]


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def png_color_counts(data: bytes, colors: list[tuple[int, int, int]]) -> dict[tuple[int, ...], int]:
    """How many pixels of a non-interlaced 8-bit RGB(A) PNG have exactly each colour."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed = 8, bytearray()
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color_type in (2, 6)
            channels = 3 if color_type == 2 else 4
        elif kind == b"IDAT":
            compressed += body
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    wanted = {color: 0 for color in colors}
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for index in range(channels, stride):
                line[index] = (line[index] + line[index - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for index in range(stride):
                left = line[index - channels] if index >= channels else 0
                line[index] = (line[index] + ((left + previous[index]) >> 1)) & 0xFF
        elif kind == 4:
            for index in range(stride):
                left = line[index - channels] if index >= channels else 0
                up = previous[index]
                upper_left = previous[index - channels] if index >= channels else 0
                estimate = left + up - upper_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
                predictor = (left, up, upper_left)[distances.index(min(distances))]
                line[index] = (line[index] + predictor) & 0xFF
        for offset in range(0, stride, channels):
            pixel = (line[offset], line[offset + 1], line[offset + 2])
            if pixel in wanted:
                wanted[pixel] += 1
        previous = line
    return wanted  # type: ignore[return-value]


def test_png_decoder_reads_a_tiny_image() -> None:
    # 2x1 RGB: one red pixel, one blue pixel; rows with the Sub filter.
    red, blue = (255, 0, 0), (0, 0, 255)
    row = bytes([1, *red, (0 - 255) & 0xFF, 0, 255])
    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row))
    png += chunk(b"IEND", b"")
    assert png_color_counts(png, [red, blue, (0, 255, 0)]) == {red: 1, blue: 1, (0, 255, 0): 0}


DASHBOARD_DAY = "?range=custom&start=2025-03-01T00:00&end=2025-03-02T00:00&tz=UTC"


def _screenshot(live_server: Any, staff: User, tmp_path: Path) -> bytes:
    """The dashboard of 2025-03-01 as Chromium draws it for ``staff``, as PNG bytes."""
    token = secrets.token_urlsafe(16)
    _LOGIN_TOKENS[token] = staff.id
    dashboard = reverse("admin:usage_dashboard") + DASHBOARD_DAY
    url = f"{live_server.url}/test-login/{token}/?next={quote(dashboard, safe='')}"
    screenshot = tmp_path / "dashboard.png"
    profile = tmp_path / "profile"
    assert CHROMIUM is not None
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--window-size=1400,1000",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert screenshot.exists(), completed.stderr.decode(errors="replace")[-2000:]
    return screenshot.read_bytes()


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium package (apt-get install -y chromium) for the screenshot",
)
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_draws_its_charts_in_chromium(
    live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    staff = User.objects.create_user(email="admin@example.com", is_staff=True, is_superuser=True)
    customer = User.objects.create_user(email="carol@example.com")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    events = []
    for hour in range(24):
        for count in range(1 + hour % 5):
            at = start + timedelta(hours=hour, minutes=count)
            events.append(
                Event(
                    at,
                    user_id=customer.id,
                    provider="bedrock" if (hour + count) % 3 == 0 else "anthropic",
                    input_tokens=20_000 + 5_000 * count,
                    output_tokens=2_000,
                    cost_usd=Decimal("0.35"),
                    fallback=(hour + count) % 3 == 0,
                )
            )
    aggregates_create(events)

    screenshot = _screenshot(live_server, staff, tmp_path)
    colors = [_hex_to_rgb(PROVIDER_COLORS["anthropic"]), _hex_to_rgb(PROVIDER_COLORS["bedrock"])]
    counts = png_color_counts(screenshot, colors)
    # The stacked bars of both providers fill thousands of pixels in their own colours; a page
    # that failed to log in, to load, or to draw its SVG has none.
    assert all(count > 2_000 for count in counts.values()), counts


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium package (apt-get install -y chromium) for the screenshot",
)
@pytest.mark.django_db(transaction=True)
def test_six_providers_are_drawn_each_in_its_colour(
    live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.SESSION_COOKIE_SECURE = False
    staff = User.objects.create_user(email="admin@example.com", is_staff=True, is_superuser=True)
    providers = ["anthropic", "bedrock", "openai", "gemini", "ollama", "vllm"]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    aggregates_create(
        [
            Event(
                start + timedelta(hours=hour, minutes=index),
                provider=provider,
                model=f"{provider}-model",
                input_tokens=30_000,
                output_tokens=3_000,
                cost_usd=Decimal("0.20"),
            )
            for hour in range(24)
            for index, provider in enumerate(providers)
        ]
    )
    png = _screenshot(live_server, staff, tmp_path)
    colors = [_hex_to_rgb(provider_color(provider)) for provider in providers]
    counts = png_color_counts(png, colors)
    # Equal stacks: every provider, the generic one included, fills its share of the bars.
    assert all(count > 1_000 for count in counts.values()), counts
