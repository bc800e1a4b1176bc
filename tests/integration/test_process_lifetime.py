"""No child process outlives the server, however it dies (kill -9 included)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.waiting import eventually

from .repo_server import RepoServer

pytestmark = [pytest.mark.models]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc), so that nothing re-parented is missed."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits for a parent


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_analysis_workers_die_with_a_killed_server(tmp_path: Path, models_dir: Path) -> None:
    server = RepoServer(tmp_path, models_dir, None, FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="2").start()
    assert server.proc is not None
    children = _children(server.proc.pid)
    assert len(children) >= 2, children  # the analysis processes (and multiprocessing's resource tracker)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    server.proc = None
    eventually(lambda: not any(_alive(pid) for pid in children), timeout_s=30,
               what=f"the server's children {sorted(children)} to die with it")
