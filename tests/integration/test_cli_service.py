"""The real CLI: `models fetch` against the npm registry, `serve`, `analyze`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.waiting import eventually
from vision.pack import DEFAULT_PACK, verify_pack

from .repo_server import free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    env.update(extra)
    return env


def test_models_fetch_from_the_registry_is_verified_and_idempotent(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "facewatch", "models", "fetch"]
    env = _env(FACEWATCH_DATA_DIR=str(tmp_path))
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # A progress bar (a line per tenth when not on a terminal), not 16 s of silence.
    progress = [line for line in first.stderr.splitlines() if line.startswith(f"downloading {DEFAULT_PACK.npm_spec}")]
    assert len(progress) >= 2 and "100%" in progress[-1], first.stderr
    target = tmp_path / "models" / DEFAULT_PACK.name
    assert verify_pack(DEFAULT_PACK, target) == []
    mtimes = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert second.returncode == 0 and "already present" in second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == mtimes
    # Without npm on PATH: a one-line error, no traceback.
    third = subprocess.run(cmd, env=_env(FACEWATCH_DATA_DIR=str(tmp_path / "other"), PATH="/nonexistent"),
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, executable=sys.executable)
    assert third.returncode == 1
    assert "npm" in third.stderr and "Traceback" not in third.stderr


def test_serve_without_models_says_to_fetch(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "facewatch", "serve"], env=_env(FACEWATCH_DATA_DIR=str(tmp_path)),
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "facewatch models fetch" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.models
def test_serve_answers_health_and_runs_the_embedded_broker(models_dir: Path, tmp_path: Path) -> None:
    from broker.client import BrokerAddress, BusClient, BusError

    port, stomp_port = free_port(), free_port()
    env = _env(FACEWATCH_DATA_DIR=str(tmp_path), FACEWATCH_MODELS__DIR=str(models_dir),
               FACEWATCH_API__PORT=str(port), FACEWATCH_BROKER__PORT=str(stomp_port))
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "facewatch", "serve", "--config", str(ROOT / "config.yaml")],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def health() -> Any:
            assert server.poll() is None, log_file.read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as resp:
                return json.loads(resp.read())

        body = eventually(health, timeout_s=60, interval_s=0.2, ignoring=(OSError,), what="serve to answer")
        assert body["status"] == "ok"
        assert body["embedding_model"].startswith("fr_feature-87aacdfe5751")
        # A credential was generated, private to the owner, and it opens the broker.
        creds_file = tmp_path / "broker-credentials.json"
        assert creds_file.stat().st_mode & 0o777 == 0o600
        creds = json.loads(creds_file.read_text())
        good = BusClient(BrokerAddress("127.0.0.1", stomp_port, creds["login"], creds["passcode"]))
        good.connect()
        got: list[bytes] = []
        good.subscribe("/topic/serve.check", lambda m: got.append(m.body), receipt=True)
        good.publish("/topic/serve.check", "ok", receipt=True)
        eventually(lambda: got, timeout_s=5, what="the message back")
        good.close()
        assert got == [b"ok"]
        with pytest.raises(BusError):
            BusClient(BrokerAddress("127.0.0.1", stomp_port, "guest", "guest")).connect(timeout_s=2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0  # SIGTERM is a clean shutdown


@pytest.mark.models
@pytest.mark.data
def test_analyze_command_prints_faces(models_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "facewatch", "analyze", str(shared_data / "faces/probe/two_people.jpg"),
         "--attributes", "age,gender"],
        env=_env(FACEWATCH_MODELS__DIR=str(models_dir)), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    faces = json.loads(proc.stdout)["faces"]
    assert len(faces) == 2
    assert all(f["attributes"]["gender"]["value"] == "male" for f in faces)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    proc = subprocess.run([sys.executable, "-m", "facewatch", "analyze", str(corrupt)],
                          env=_env(FACEWATCH_MODELS__DIR=str(models_dir)), capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr
