"""The OpenAPI document against a real `facewatch serve`: schemathesis, every check on, finds nothing.

Bounded (max-examples per operation in contract/schemathesis.toml, one worker) and seeded, so CI
runs the same cases each time; image and zip uploads are drawn from real faces (contract/hooks.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .repo_server import ROOT, RepoServer

pytestmark = [pytest.mark.models, pytest.mark.data]

CONTRACT = Path(__file__).parent / "contract"
SEED = "20261126"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[tuple[RepoServer, str]]:
    server = RepoServer(tmp_path_factory.mktemp("contract"), models_dir, None)
    tenant = server.create_tenant("acme")
    server.start()
    yield server, tenant["api_key"]
    server.stop()


def test_every_rest_route_is_documented_with_its_replies(served: tuple[RepoServer, str]) -> None:
    server, _ = served
    doc = server.http().call("GET", "/api/v1/openapi.json").body
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) >= 40 and not any(p.startswith("/api/v1/cameras") for p, _, _ in operations)
    for path, method, op in operations:
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), (path, method)
        assert {"400", "429"} <= statuses, (path, method)
        for status, reply in op["responses"].items():
            if status >= "400":
                assert reply["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    detect = doc["paths"]["/api/v1/detect"]["post"]["requestBody"]["content"]
    assert detect["application/json"]["schema"]["properties"]["image"]["format"] == "byte"
    assert detect["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"


def test_schemathesis_finds_nothing(served: tuple[RepoServer, str], shared_data: Path) -> None:
    server, api_key = served
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.contract.hooks", "FWTEST_DATA_DIR": str(shared_data),
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(CONTRACT / "schemathesis.toml"),
         "run", f"{server.base}/api/v1/openapi.json", "-H", f"x-api-key: {api_key}", "--checks", "all",
         "--seed", SEED, "--workers", "1", "--report-dir", str(server.data_dir / "schemathesis")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-25_000:] + run.stderr[-3000:]
    summary = run.stdout[run.stdout.find("= SUMMARY ="):]
    assert "Errored" not in summary and "failure" not in summary, summary
