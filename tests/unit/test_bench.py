"""The benchmarks start as they are, without pytest (which only the test extra installs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "common.py")

# Runs a script as `python bench/NAME.py --help` would (its folder first on sys.path), with pytest unimportable.
RUN_WITHOUT_PYTEST = """
import runpy, sys
sys.modules["pytest"] = None
script = sys.argv[1]
sys.path[0] = str(__import__("pathlib").Path(script).parent)
sys.argv = [script, "--help"]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts_without_pytest(script: str) -> None:
    done = subprocess.run([sys.executable, "-c", RUN_WITHOUT_PYTEST, str(ROOT / "bench" / script)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT / "bench")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
