"""Dependencies point one way (design.md 1): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("vision", "broker", "api", "repo", "watcher", "grouping", "facewatch")
# What each package may import from the others.
ALLOWED = {
    "vision": set(),
    "broker": set(),
    "api": {"broker"},
    "repo": {"api", "vision", "broker"},
    "watcher": {"api", "vision", "broker", "repo"},
    "grouping": {"api", "vision", "broker", "repo"},
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
