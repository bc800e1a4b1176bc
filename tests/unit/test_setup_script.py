"""scripts/setup.sh: a re-run with nothing changed runs no pip (README's first command starts in seconds)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_a_rerun_with_nothing_changed_skips_pip(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "console" / "npm").mkdir(parents=True)
    shutil.copy(ROOT / "console" / "npm" / "package-lock.json", tmp_path / "console" / "npm" / "package-lock.json")
    calls = tmp_path / "calls.log"
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    # Stand-ins that record what the script asks of them.
    _script(venv_bin / "python", f'[ "$1" = -V ] && echo "Python 3.11.2" && exit 0\necho "python $*" >> {calls}\n'
                                 f'touch {venv_bin / "facewatch"}; chmod +x {venv_bin / "facewatch"}\n')
    _script(venv_bin / "facewatch", f'echo "facewatch $*" >> {calls}\n')
    tools = tmp_path / "tools"
    tools.mkdir()
    # npm ci "installs" the files the console's assets are copied from.
    modules = tmp_path / "console" / "npm" / "node_modules"
    made = " ".join(str(modules / f) for f in ("@stomp/stompjs/bundles/stomp.umd.min.js", "@stomp/stompjs/LICENSE",
                                               "swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/LICENSE",
                                               "swagger-ui-dist/swagger-ui.css"))
    _script(tools / "npm", f'echo "npm $*" >> {calls}\n'
                           f'for f in {made}; do mkdir -p "$(dirname "$f")"; touch "$f"; done\n')
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}

    def run() -> list[str]:
        calls.write_text("")
        done = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines()

    first = run()
    assert any("-m pip install" in c and "-e .[test]" in c for c in first)
    assert any(c.startswith("npm ci") for c in first)
    assert {p.name for p in (tmp_path / "console" / "static" / "vendor").iterdir()} >= {
        "stomp.umd.min.js", "swagger-ui-bundle.js", "swagger-ui.css"}
    _script(venv_bin / "facewatch", f'echo "facewatch $*" >> {calls}\n')  # the stand-in pip replaced it
    assert run() == ["facewatch models fetch"]  # nothing changed: no pip, no npm
    with (tmp_path / "pyproject.toml").open("a") as fh:
        fh.write("\n# a change\n")
    assert any("-m pip install" in c for c in run())
