"""README's quickstart, run as written: its five ``sh`` blocks, in order, as a person types them.

Block 1 runs in a terminal of its own (the service); blocks 2 to 5 in one bash
session fed through its input, the event watcher of block 3 in the background
as the README has it. The only changes to the text are where this machine
differs from a user's: the ports (free ones instead of 8080 and 61623), where
the shared data is, and ``.venv/bin/`` (a folder whose ``facewatch`` and
``python`` run the interpreter under test). Each is checked to occur in the
text, so an edit of the README that drops one fails here rather than passing
untested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

from .repo_server import ROOT, Http, free_port
from .shell import Terminal, json_objects, shim_dir

pytestmark = [pytest.mark.models, pytest.mark.data]


def quickstart_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def localised(block: str, substitutions: dict[str, str]) -> str:
    for written, here in substitutions.items():
        block = block.replace(written, here)
    return block


def test_quickstart_commands_recognise_a_face_on_a_file_camera(tmp_path: Path, models_dir: Path,
                                                               shared_data: Path) -> None:
    blocks = quickstart_blocks()
    assert len(blocks) == 5, "the quickstart has five blocks: serve, enrol, watch, camera, identify"
    port, stomp_port = free_port(), free_port()
    bin_dir = shim_dir(tmp_path / "venv-bin", sys.executable)
    substitutions = {"$PWD/../shared/data": str(shared_data), "127.0.0.1:8080": f"127.0.0.1:{port}",
                     "61623": str(stomp_port), ".venv/bin/": f"{bin_dir}/"}
    text = "".join(blocks)
    assert all(written in text for written in substitutions), [w for w in substitutions if w not in text]
    serve_block, enrol_block, watch_block, camera_block, identify_block = (localised(b, substitutions)
                                                                          for b in blocks)
    # The repository's folder as a user has it: config.yaml (data_dir ./data is relative to it).
    home = tmp_path / "facewatch"
    home.mkdir()
    shutil.copy(ROOT / "config.yaml", home / "config.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    env.update(FACEWATCH_MODELS__DIR=str(models_dir), FACEWATCH_API__PORT=str(port),
               FACEWATCH_BROKER__PORT=str(stomp_port),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p))

    log_path = tmp_path / "terminal-1.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(["bash", "-c", serve_block], cwd=home, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    terminal: Terminal | None = None
    try:
        def serving() -> bool:
            assert server.poll() is None, log_path.read_text()[-3000:]
            return Http(f"http://127.0.0.1:{port}").call("GET", "/api/v1/health").status == 200

        eventually(serving, timeout_s=120, interval_s=0.2, ignoring=(OSError,), what="terminal 1's serve")

        terminal = Terminal(home, env, tmp_path / "terminal-2.stderr")
        terminal.type(enrol_block + "echo '@@ enrolled'")
        terminal.wait_for("end of block 2", lambda out: "@@ enrolled" in out, 300)
        printed = json_objects(terminal.output)
        assert {"hamilton"} <= {o.get("name") for o in printed}, terminal.output
        assert any(o.get("id") == "lin_manuel_miranda" for o in printed), terminal.output
        assert any(o.get("faces") and "id" in o["faces"][0] for o in printed), terminal.output
        assert "face(s) enrolled into hamilton" in terminal.output, terminal.output

        terminal.type(watch_block)
        topic = terminal.wait_for("the watcher's subscription",
                                  lambda out: re.search(r"watching (/topic/tenant\.\S+\.watcher\.\*)", out), 60)
        tenant = json.loads((home / "demo.json").read_text())["tenant_id"]
        assert topic.group(1) == f"/topic/tenant.{tenant}.watcher.*"

        terminal.type(camera_block)

        def recognised(out: str) -> dict[str, Any] | None:
            return next((o for o in json_objects(out) if o.get("type") == "face.recognized"
                         and (o.get("subject") or {}).get("id") == "lin_manuel_miranda"), None)

        event = terminal.wait_for("a face.recognized event for Lin-Manuel Miranda", recognised, 180)
        assert event["camera"] == "stage" and event["subject"]["gallery"] == "hamilton"
        assert "crop" not in event and "camera.status" in {o.get("type") for o in json_objects(terminal.output)}

        terminal.type(identify_block)
        assert terminal.exit(120) == 0, terminal.output
        answer = next(o for o in json_objects(terminal.output) if "faces" in o and o["faces"]
                      and "matches" in o["faces"][0])
        assert [m["subject"] for m in answer["faces"][0]["matches"]] == ["alex_lacamoire"], answer
    finally:
        if terminal is not None:
            terminal.close()
        _stop_group(server)
    assert "stopped cleanly" in log_path.read_text(), log_path.read_text()[-3000:]


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to terminal 1 (bash and the serve it started), then wait until every process of it is gone."""

    def gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    if not gone():
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    try:
        eventually(gone, timeout_s=60, interval_s=0.1, what="serve to shut down")
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
