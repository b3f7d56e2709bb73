"""The accounts modules import one another without a cycle (keycache once imported selectors and
selectors keycache), and dead code stays out."""

from __future__ import annotations

import ast
from pathlib import Path

import accounts
from accounts import services

APP = Path(accounts.__file__).parent


def _imports_of(path: Path) -> set[str]:
    """The accounts modules a module imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "accounts":
                found.update(f"accounts.{alias.name}" for alias in node.names)
            elif node.module.startswith("accounts."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("accounts."))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"accounts.{path.stem}": path for path in APP.glob("*.py")}
    return {name: _imports_of(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for imported in sorted(graph[name]):
            if (cycle := visit(imported)) is not None:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        if (cycle := visit(name)) is not None:
            return cycle
    return None


def test_the_accounts_modules_import_one_another_without_a_cycle() -> None:
    graph = _graph()
    assert "accounts.selectors" in graph["accounts.keycache"]  # the scan does see imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_keys_are_verified_in_one_place_only() -> None:
    # The proxy's key cache decides whether a key works; a second verifier would drift from it.
    assert not hasattr(services, "access_key_verify")
