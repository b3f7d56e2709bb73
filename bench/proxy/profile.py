"""Profiles of a running server with py-spy, summarised as the top hot spots.

py-spy samples the worker from outside (``record --nonblocking --format raw``), so the server
runs unmodified. The raw output is collapsed stacks (``frame;frame;frame count``, each frame
``function (file:line)``); ``summarise`` turns it into the functions with the most samples on
top of the stack (self) and anywhere in it (inclusive), and the project's own functions among
them, which is where a fix would go; and ``group_of`` sorts every busy sample into one group
(Django/ninja dispatch, httpx/httpcore, JSON, usage recording, the gateway's own code,
asyncio...) by where its time was spent.

    python -m bench.proxy.profile /path/to/profile.txt
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.proxy.processes import REPO

PY_SPY = REPO / "bench" / ".venv-tools" / "bin" / "py-spy"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT_PACKAGES = frozenset(
    {"accounts", "proxy", "usage", "gateway_project", "governance", "requestlog"}
)
_IDLE = ("select (selectors.py", "_run_once", "run_forever", "poll (", "epoll")

USAGE = "usage recording"
OURS = "gateway code (proxy/, accounts/, governance/, gateway_project/...)"
HTTP_CLIENT = "HTTP client (httpx, httpcore, anyio, aiohttp)"
OTHER = "other"
# Where a sample's time went, by the file of the frame that spent it (paths as ``_short``
# prints them). First match wins; a sample with a frame in usage/ anywhere is usage recording.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (OURS, tuple(f"{package}/" for package in sorted(PROJECT_PACKAGES))),
    ("Django/ninja dispatch", ("django/", "ninja/", "pydantic/", "pydantic_core/")),
    (
        "threads (asgiref sync_to_async, executor)",
        ("asgiref/", "concurrent/futures/", "threading.py", "queue.py"),
    ),
    (
        HTTP_CLIENT,
        (
            "httpx/",
            "httpcore/",
            "anyio/",
            "h11/",
            "sniffio/",
            "httpx_aiohttp/",
            "aiohttp/",
            "multidict/",
            "yarl/",
            "aiohappyeyeballs/",
        ),
    ),
    ("JSON", ("json/", "orjson")),
    ("ASGI server (uvicorn, httptools)", ("uvicorn/", "httptools/")),
    ("asyncio/uvloop event loop", ("asyncio/", "uvloop/")),
    ("database/redis clients", ("psycopg/", "psycopg_pool/", "redis/")),
    ("logging/metrics", ("logging/", "prometheus_client/")),
)
# Frames of usage/ that every request runs under without recording anything (the ASGI
# application that drains the usage writer at shutdown).
_USAGE_WRAPPERS = frozenset({"usage/lifespan.py"})
# Generic helpers whose time belongs to whoever called them (a context manager's __exit__ is
# the cost of the code that used it).
_GENERIC = (
    "contextlib.py",
    "functools.py",
    "typing.py",
    "abc.py",
    "enum.py",
    "re/",
    "copy.py",
    "dataclasses.py",
    "weakref.py",
    "_weakrefset.py",
    "collections/",
    "inspect.py",
    "types.py",
    "contextvars",
)


def record(*, pid: int, seconds: int, output: Path, rate: int = 100) -> Path | None:
    """Sample ``pid`` for ``seconds``; None when py-spy is missing or not permitted."""
    if not PY_SPY.exists():
        return None
    command = [
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--gil",  # only samples holding the GIL: where the worker's CPU time goes
        "-o",
        str(output),
    ]
    finished = subprocess.run(  # noqa: S603 - fixed commands built here
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if finished.returncode != 0 or not output.exists():
        sys.stderr.write(f"py-spy failed: {finished.stderr[-1000:]}\n")
        return None
    return output


def _short(frame: str) -> str:
    """``function (path:line)`` with the path relative to the repository or site-packages."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(REPO) + "/", "")
    return f"{match['function']} ({path})"


def _is_project(frame: str) -> bool:
    """A frame in the gateway's own code (py-spy prints paths relative to sys.path entries)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return False
    path = match["file"].replace(str(REPO) + "/", "")
    return path.split("/", 1)[0] in PROJECT_PACKAGES


def _path(frame: str) -> str:
    short = _short(frame)
    return short.rsplit(" (", 1)[1][:-1] if short.endswith(")") and " (" in short else ""


def group_of(frames: list[str]) -> str:
    """The group a busy sample's time belongs to (``frames`` outermost first): usage recording
    if any frame is in usage/ (but for the ASGI wrapper around every request); else the group
    of the innermost frame that is not a generic helper (contextlib, functools...)."""
    paths = [_path(frame) for frame in frames]
    if any(path.startswith("usage/") and path not in _USAGE_WRAPPERS for path in paths):
        return USAGE
    for path in reversed(paths):
        if path.startswith(_GENERIC):
            continue
        for group, prefixes in GROUPS:
            if path.startswith(prefixes):
                return group
        return OTHER
    return OTHER


def summarise(raw: str, *, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts per function, idle loop waits left out."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project_inclusive: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    group_frames: dict[str, Counter[str]] = {}
    busy = 0
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        total += count
        if not frames or any(marker in frames[-1] for marker in _IDLE):
            continue
        busy += count
        self_counts[_short(frames[-1])] += count
        group = group_of(frames)
        groups[group] += count
        group_frames.setdefault(group, Counter())[_short(frames[-1])] += count
        seen: set[str] = set()
        for frame in frames:
            name = _short(frame)
            if name in seen:
                continue
            seen.add(name)
            inclusive[name] += count
            if _is_project(frame):
                project_inclusive[name] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": count, "share": round(count / busy, 3) if busy else 0}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "busy_samples": busy,
        "self": table(self_counts),
        "inclusive": table(inclusive),
        "project_inclusive": table(project_inclusive),
        "groups": [
            {
                "group": group,
                "samples": count,
                "share": round(count / busy, 3) if busy else 0,
                "top_self": [name for name, _count in group_frames[group].most_common(3)],
            }
            for group, count in groups.most_common()
        ],
    }


def as_markdown(summary: dict[str, Any], *, rows: int = 12) -> str:
    lines = [
        f"{summary['busy_samples']} busy samples of {summary['samples']}.",
        "",
        "| self | % | inclusive (project code) | % |",
        "|---|---:|---|---:|",
    ]
    selfs = summary["self"][:rows]
    projects = summary["project_inclusive"][:rows]
    for index in range(max(len(selfs), len(projects))):
        left = selfs[index] if index < len(selfs) else None
        right = projects[index] if index < len(projects) else None
        lines.append(
            "| "
            + (f"`{left['function']}` | {left['share'] * 100:.1f}" if left else " | ")
            + " | "
            + (f"`{right['function']}` | {right['share'] * 100:.1f}" if right else " | ")
            + " |"
        )
    if summary.get("groups"):
        # With the worker's CPU per request during the profiled run, each group's share of the
        # samples becomes an estimate of its CPU time per request.
        cpu = summary.get("wrk_cpu_ms_per_request_while_profiled")
        lines += [
            "",
            f"Samples by group{f' (CPU {cpu:.2f} ms/request while profiled)' if cpu else ''}:",
            "",
            "| group (self time) | % | ≈ ms/request | top frames |",
            "|---|---:|---:|---|",
        ]
        for group in summary["groups"]:
            frames = ", ".join(f"`{name}`" for name in group["top_self"])
            per_request = f"{group['share'] * cpu:.2f}" if cpu else "–"
            lines.append(
                f"| {group['group']} | {group['share'] * 100:.1f} | {per_request} | {frames} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = Path(sys.argv[1]).read_text()
    sys.stdout.write(as_markdown(summarise(text)))
