"""Source scans that keep slips out of the repository.

- App code reads a setting as ``settings.NAME``. ``getattr(settings, NAME, default)`` hides a
  second default beside the one in gateway_project/settings.py (they drift apart), and for a name
  settings.py does not declare it is a setting nobody can find in the README or .env.example.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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
