"""Starting, watching and stopping the benchmark's server processes (all on 127.0.0.1).

The fakes (Anthropic + Bedrock, and OpenAI) are started here; the proxies in ``targets``.
``snapshot_source`` copies the work tree at the start of a run, so every gateway process of the
run (it is restarted between targets) runs the same code, whatever changes meanwhile.

Each server runs in its own process group, optionally pinned to a CPU core with ``taskset``
(which execs the command, so the process id is the server's own). Memory is read from
``/proc/<pid>/status`` (VmRSS), summed over the process and its children.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"


class ProcessFailed(Exception):
    """A server did not start, or died; the message holds the tail of its log."""


def snapshot_source(dest: Path) -> Path:
    """A copy of the work tree's files as they are now (tracked and untracked ones, not those
    git ignores, not the benchmark's results) in ``dest``, to run the gateway from."""
    listed = subprocess.run(  # noqa: S603 - a fixed command
        [
            shutil.which("git") or "git",
            "-C",
            str(REPO),
            "ls-files",
            "-co",
            "--exclude-standard",
            "-z",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.split(b"\0")
    for raw in listed:
        relative = raw.decode()
        source = REPO / relative
        if not relative or relative.startswith("bench/results/") or not source.is_file():
            continue  # a file deleted in the work tree is listed but gone
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> int:
    return len(os.sched_getaffinity(0))


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """The command under ``taskset -c core`` when there are cores to spare and taskset exists."""
    if core is None or cores() < 2 or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", str(core), *command]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except OSError:
        return []
    for child in list(found):
        found.extend(_children(child))
    return found


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = rss_kib(pid) + sum(rss_kib(child) for child in _children(pid))
    return round(total / 1024, 1)


@dataclass
class Server:
    """A server process the benchmark started."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = None
    base_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ProcessFailed(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed commands built here
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_http(self, path: str, *, timeout: float) -> None:
        """Until GET base_url+path answers (any status below 500)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                # base_url is always http://127.0.0.1:<port>, set by this module.
                with urllib.request.urlopen(self.base_url + path, timeout=2) as response:  # noqa: S310
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ProcessFailed(f"{self.name} did not answer {path} in {timeout}s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise ProcessFailed(f"{self.name} exited\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_mib(self) -> float:
        return tree_rss_mib(self.pid)

    def restart(self, health_path: str, *, timeout: float = 60.0) -> None:
        """Stop and start again with the same command (same port), then wait until
        ``health_path`` answers: a fresh process, empty caches and connection pools."""
        self.stop()
        self.start()
        self.wait_http(health_path, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the server's own process group, SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        self.process = None


def start_fake(*, log_dir: Path, core: int | None, text_deltas: int, env: dict[str, str]) -> Server:
    """The fake upstream on a free port; its first stdout line is its base URL."""
    port = free_port()
    command = pinned(
        [
            str(MAIN_PYTHON),
            "-m",
            "bench.proxy.fake",
            "--port",
            str(port),
            "--text-deltas",
            str(text_deltas),
        ],
        core,
    )
    server = Server("fake", command, env, log_dir / "fake.log")
    server.base_url = f"http://127.0.0.1:{port}"
    server.start()
    server.wait_http("/v1/models", timeout=30)
    return server


def start_openai_fake(
    *, log_dir: Path, core: int | None, text_deltas: int, env: dict[str, str]
) -> Server:
    """The fake OpenAI (``proxy.testing.fake_openai``, no request history) on a free port."""
    port = free_port()
    command = pinned(
        [
            str(MAIN_PYTHON),
            "-m",
            "proxy.testing.fake_openai",
            "--port",
            str(port),
            "--text-deltas",
            str(text_deltas),
        ],
        core,
    )
    server = Server("fake-openai", command, env, log_dir / "fake-openai.log")
    server.base_url = f"http://127.0.0.1:{port}"
    server.start()
    server.wait_http("/v1/models", timeout=30)  # a 401 without a key: it is up
    return server
