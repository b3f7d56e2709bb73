"""Profiles of a running server with py-spy, summarised as the top hot spots.

py-spy samples the worker from outside (``record --nonblocking --format raw``), so the server
runs unmodified. The raw output is collapsed stacks (``frame;frame;frame count``, each frame
``function (file:line)``); ``summarise`` turns it into the functions with the most samples on
top of the stack (self) and anywhere in it (inclusive), and the project's own functions among
them, which is where a fix would go.

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
PROJECT_PACKAGES = frozenset({"accounts", "proxy", "usage", "gateway_project"})
_IDLE = ("select (selectors.py", "_run_once", "run_forever", "poll (", "epoll")


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


def summarise(raw: str, *, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts per function, idle loop waits left out."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project_inclusive: Counter[str] = Counter()
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = Path(sys.argv[1]).read_text()
    sys.stdout.write(as_markdown(summarise(text)))
