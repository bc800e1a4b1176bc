"""Dependencies point one way (design.md 1): checked on the import statements."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("events", "vision", "broker", "api", "repo", "watcher", "grouping", "sightings", "console", "facewatch")
# What each package may import from the others.
ALLOWED = {
    "events": set(),  # the vocabulary: every package may speak it, it knows none of them
    "vision": set(),
    "broker": set(),
    "api": {"broker", "events"},
    "repo": {"api", "vision", "broker", "events"},
    "watcher": {"api", "vision", "broker", "repo", "events"},
    "grouping": {"api", "vision", "broker", "repo", "events"},
    "sightings": {"api", "vision", "broker", "repo", "events"},  # grouping and cameras reach it through the root
    "console": set(),  # a client of the public APIs: nothing of the service
    "facewatch": set(PACKAGES),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", [p for p in PACKAGES if (ROOT / p).is_dir()])
def test_dependencies_point_one_way(package: str) -> None:
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) - ALLOWED[package] - {package}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def _module_imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that ``path`` (a module in it) imports, by module name.

    Imports under ``if TYPE_CHECKING:`` count too: a circle hidden from the
    interpreter is still a circle in the design.
    """
    tree = ast.parse(path.read_text(), str(path))
    own = path.relative_to(ROOT).with_suffix("").parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(own[:len(own) - node.level]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # ``from . import x`` / ``from pkg import x``: x may be a module.
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith(package + ".") and n != package}
    return found


def _module_graph(package: str) -> dict[str, set[str]]:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in (ROOT / package).rglob("*.py")}
    return {name: _module_imports(path, package) & set(modules) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph``, as a path that ends where it starts; None if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


@pytest.mark.parametrize("package", [p for p in PACKAGES if (ROOT / p).is_dir()])
def test_no_import_cycle_inside_a_package(package: str) -> None:
    assert _cycle(_module_graph(package)) is None


def test_module_graph_sees_relative_imports() -> None:
    graph = _module_graph("broker")
    assert {"broker.core", "broker.session"} <= graph["broker.server"]
    assert "broker.session" not in graph["broker.core"]  # core sees connections through protocols


def test_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(_module_graph("broker")))
def test_broker_module_imports_alone(module: str) -> None:
    """Each broker module imports first in a fresh interpreter (no order dependence)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
