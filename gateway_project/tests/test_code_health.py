"""Source scans that keep two kinds of slip out of the repository.

- App code reads a setting as ``settings.NAME``. ``getattr(settings, NAME, default)`` hides a
  second default beside the one in gateway_project/settings.py (they drift apart), and for a name
  settings.py does not declare it is a setting nobody can find in the README or .env.example.
- The Markdown files link only to what is in the repository: no ``../`` out of it, no absolute
  path of one machine's files.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("accounts", "gateway_project", "governance", "proxy", "requestlog", "usage")

# Settings app code may read with a default because an installation may leave them undefined on
# purpose. None so far: every setting the gateway reads is declared in settings.py.
OPTIONAL_SETTINGS: frozenset[str] = frozenset()


# --- settings read through getattr --------------------------------------------------------------


def getattr_setting_reads(source: str) -> list[tuple[int, str | None]]:
    """(line, setting name) of every ``getattr(settings, ...)`` in a module; the name is None
    when it is not a string literal."""
    found: list[tuple[int, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and node.args
        ):
            continue
        target = node.args[0]
        target_name = target.id if isinstance(target, ast.Name) else None
        if isinstance(target, ast.Attribute):
            target_name = target.attr
        if target_name is None or not target_name.endswith("settings"):
            continue
        name = node.args[1] if len(node.args) > 1 else None
        literal = name.value if isinstance(name, ast.Constant) else None
        found.append((node.lineno, literal if isinstance(literal, str) else None))
    return found


def _app_modules() -> Iterator[Path]:
    for package in APP_PACKAGES:
        for path in sorted((BASE_DIR / package).rglob("*.py")):
            if "tests" not in path.relative_to(BASE_DIR).parts:
                yield path


def _problem(name: str | None) -> str | None:
    if name is None:
        return "a setting whose name is computed: read settings.NAME"
    if name in OPTIONAL_SETTINGS:
        return None
    if hasattr(settings, name):
        return f"{name} is always defined: read settings.{name}"
    return (
        f"{name} is not declared: declare it in gateway_project/settings.py (with its README "
        "row and .env.example line), or list it in OPTIONAL_SETTINGS here"
    )


def test_app_code_reads_settings_as_attributes() -> None:
    problems = [
        f"{path.relative_to(BASE_DIR)}:{line}: {problem}"
        for path in _app_modules()
        for line, name in getattr_setting_reads(path.read_text())
        if (problem := _problem(name)) is not None
    ]
    assert problems == []


def test_the_settings_scan_finds_getattr_reads() -> None:
    source = (
        "from django.conf import settings\n"
        "from django.conf import settings as django_settings\n"
        "a = settings.DEBUG\n"
        "b = getattr(settings, 'DEBUG', False)\n"
        "c = getattr(\n    django_settings, 'GATEWAY_NOT_A_SETTING', True\n)\n"
        "d = getattr(settings, name)\n"
        "e = getattr(request, 'user', None)\n"
    )
    reads = getattr_setting_reads(source)
    assert reads == [(4, "DEBUG"), (5, "GATEWAY_NOT_A_SETTING"), (8, None)]
    assert [_problem(name) is not None for _line, name in reads] == [True, True, True]


# --- Markdown links -----------------------------------------------------------------------------

# Directories that are not the project's text: virtual environments (bench/.venv-* too), caches,
# and the benchmarks' scratch copies of the tree (git-ignored).
_SKIPPED_DIRECTORIES = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
_SKIPPED_PATHS = {BASE_DIR / "bench" / "results" / "tmp"}

_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", re.MULTILINE)
_HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
# A path written out in the text or a code span (`../shared/PROTOCOLS.md`) counts as a link too.
_PARENT_PATH = re.compile(r"(?<![\w./-])((?:\.\./)+[^\s`'\"()<>\[\]]*)")
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def markdown_files() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(BASE_DIR):
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if name not in _SKIPPED_DIRECTORIES
            and not name.startswith(".venv-")
            and Path(directory, name) not in _SKIPPED_PATHS
        )
        for name in sorted(files):
            if name.endswith(".md"):
                yield Path(directory, name)


def _machine_paths() -> tuple[str, ...]:
    """Beginnings of absolute paths to files of one machine: home directories, file URLs, and
    the directory this checkout sits in (a sibling of the repository is on no other machine)."""
    prefixes = ["file:", "/home/", "/Users/", "/root/"]
    if BASE_DIR.parent != Path(BASE_DIR.anchor):
        prefixes.append(f"{BASE_DIR.parent}/")
    return tuple(prefixes)


def _outside(document: Path, target: str, root: Path) -> bool:
    """A relative link target, resolved from its document's directory, leaves the root."""
    path = target.split("#", 1)[0].split("?", 1)[0]
    resolved = Path(os.path.normpath(document.parent / path))
    return not resolved.is_relative_to(root)


def outside_links(document: Path, text: str, root: Path = BASE_DIR) -> list[str]:
    """The links and written-out paths of a Markdown document that point outside ``root``."""
    found: list[str] = []
    targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text) + _HTML_LINK.findall(text)
    for target in targets:
        scheme = _URL_SCHEME.match(target)
        if target.startswith("#"):
            continue  # a place on this page
        if scheme and len(scheme.group(1)) > 1 and scheme.group(1).lower() != "file":
            continue  # a web address (a one-letter "scheme" is a Windows drive)
        if scheme or target.startswith(("/", "~", "\\")) or _outside(document, target, root):
            found.append(target)
    found += [path for path in _PARENT_PATH.findall(text) if _outside(document, path, root)]
    # A machine's path starts a path: not "/tmp/" inside "bench/results/tmp/".
    starts = "|".join(re.escape(prefix) for prefix in _machine_paths())
    machine_path = re.compile(rf"(?<![\w./~-])(?:{starts})")
    found += [line.strip() for line in text.splitlines() if machine_path.search(line)]
    return list(dict.fromkeys(found))  # a link is also a written-out path: once


def test_markdown_files_link_only_inside_the_repository() -> None:
    documents = list(markdown_files())
    assert BASE_DIR / "README.md" in documents
    problems = {
        str(path.relative_to(BASE_DIR)): links
        for path in documents
        if (links := outside_links(path, path.read_text(encoding="utf-8")))
    }
    assert problems == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See [the guide](../../shared/GUIDE.md).", ["../../shared/GUIDE.md"]),
        ("covering every trap in `../../shared/PROTOCOLS.md` §4", ["../../shared/PROTOCOLS.md"]),
        ("[style]: ../../outside.md", ["../../outside.md"]),
        ('<img src="/srv/files/chart.png">', ["/srv/files/chart.png"]),
        ("[local](file:///etc/passwd)", ["file:///etc/passwd", "[local](file:///etc/passwd)"]),
        ("[home](~/notes.md)", ["~/notes.md"]),
        ("Within: [top](../README.md), [here](#usage), `../docs/x.md`.", []),
        ("[web](https://example.com/a/../b), `/v1/messages`, `/api/admin/usage`", []),
    ],
)
def test_the_markdown_scan_finds_links_out_of_the_repository(
    text: str, expected: list[str]
) -> None:
    document = BASE_DIR / "bench" / "README.md"  # one level down: a single ../ stays inside
    assert outside_links(document, text) == expected


def test_the_checkout_directory_counts_only_where_a_path_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkout in /tmp: "/tmp/x" is a path of that machine, "bench/results/tmp/x" is not."""
    monkeypatch.setattr(sys.modules[__name__], "_machine_paths", lambda: ("/home/", "/tmp/"))
    document = BASE_DIR / "README.md"
    assert outside_links(document, "runs stay in `bench/results/tmp/` (ignored)") == []
    assert outside_links(document, "see `/tmp/gateway/notes.md`") == ["see `/tmp/gateway/notes.md`"]
    assert outside_links(document, "at /home/me/x") == ["at /home/me/x"]
