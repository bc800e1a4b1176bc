"""examples/ run against a real `facewatch serve` with a file camera on the shared clip: the Python app
(enrol, subscribe, register a camera, print recognitions) and the browser page (stompjs in Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facewatch.client import BrokerAddress, Facewatch

from .repo_server import ROOT, RepoServer, enrol

pytestmark = [pytest.mark.models, pytest.mark.data]

EXAMPLES = ROOT / "examples"
BROWSER_TESTS = ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CLIP = "video/short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
           shared_data: Path) -> Iterator[tuple[RepoServer, str]]:
    """A server whose cameras may read the shared clip, and a tenant's API key."""
    server = RepoServer(tmp_path_factory.mktemp("examples"), models_dir, None,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(shared_data / "video")]),
                        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0")
    key = server.create_tenant("examples")["api_key"]
    server.start()
    yield server, key
    server.stop()


def _client(server: RepoServer, key: str) -> Facewatch:
    return Facewatch.connect(api_url=server.base, broker=BrokerAddress("127.0.0.1", server.stomp_port, "t", key),
                             api_key=key)


def test_python_app_enrols_watches_and_prints_recognitions(served: tuple[RepoServer, str], shared_data: Path) -> None:
    server, key = served
    clip = f"file://{shared_data / CLIP}"
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_app.py"), "--api", server.base,
         "--stomp", f"127.0.0.1:{server.stomp_port}", "--gallery", "app", "--enrol", str(shared_data / "faces/enroll"),
         "--camera", "example-py", clip, "--exit-after", "1"],
        env={**server.env, "FACEWATCH_API_KEY": key}, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.endswith("face(s) enrolled into app") and int(line.split()[0]) >= 10 for line in lines), lines
    watching = lines.index(next(line for line in lines if line.startswith("watching /topic/tenant.")))
    registered = lines.index("camera example-py registered")
    assert watching < registered  # subscribed before the camera started: nothing missed
    recognised = [line for line in lines if line.startswith("recognised ")]
    assert len(recognised) == 1 and " on example-py, similarity " in recognised[0], lines
    assert "(lin_manuel_miranda, gallery app)" in recognised[0] or "(alex_lacamoire, gallery app)" in recognised[0]
    assert "camera example-py running" in lines
    with _client(server, key) as fw:
        fw.remove_camera("example-py")


def _require_browser() -> None:
    missing = [what for what, there in (
        (f"{CHROMIUM} (Debian package chromium)", Path(CHROMIUM).exists()),
        (f"node modules (npm ci in {BROWSER_TESTS})", (BROWSER_TESTS / "node_modules" / "playwright-core").is_dir()),
        (f"the stompjs bundle (npm ci in {EXAMPLES / 'browser'})",
         (EXAMPLES / "browser/node_modules/@stomp/stompjs/bundles/stomp.umd.min.js").is_file()),
        ("node", shutil.which("node") is not None),
    ) if not there]
    if missing:
        reason = "the browser example's test needs " + ", ".join(missing)
        if os.environ.get("FWTEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (FWTEST_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)


def test_browser_page_lists_recognitions_from_the_tenant_topic(served: tuple[RepoServer, str],
                                                               shared_data: Path) -> None:
    _require_browser()
    server, key = served
    with _client(server, key) as fw:
        enrol(server.http(api_key=key), shared_data, "web", ["lin_manuel_miranda", "alex_lacamoire"])
        tenant = fw.me().tenant
        # What the page says is enough: a key that changes nothing.
        made = server.cli("keys", "create", "examples", "--scope", "read", "--name", "wall display")
        assert made.returncode == 0, made.stderr
        read_key = json.loads(made.stdout)["key"]
        page = (EXAMPLES / "browser" / "index.html").as_uri() + f"#ws=ws://127.0.0.1:{server.port}/stomp&key={read_key}"
        proc = subprocess.Popen(["node", str(BROWSER_TESTS / "example_page.mjs"), page, "120000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BROWSER_TESTS)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            ready = proc.stdout.readline().strip()
            assert ready == f"READY /topic/tenant.{tenant}.watcher.*", (ready, proc.stderr.read())
            # The page is subscribed (its receipt came): the camera starts now, and nothing it says is missed.
            fw.add_camera("example-web", f"file://{shared_data / CLIP}", galleries=["web"])
            shown = json.loads(proc.stdout.readline() or "null")
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        fw.remove_camera("example-web")
    assert shown, "the page showed no recognition"
    first = shown[0]
    assert first["camera"] == "example-web" and first["subject"] in {"lin_manuel_miranda", "alex_lacamoire"}
    assert first["crop"] and " on example-web at " in first["text"]
