"""A real browser: headless Chromium with @stomp/stompjs over WebSocket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from broker.client import BrokerAddress
from tests.waiting import eventually

from .conftest import collecting_client


BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append(f"node modules (npm ci in {BROWSER_DIR})")
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        reason = "browser test needs " + ", ".join(missing)
        if os.environ.get("FWTEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (FWTEST_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)


def test_chromium_receives_stomp_py_publication_and_publishes_back(ws_target: tuple[str, BrokerAddress]) -> None:
    _require_browser()
    ws_url, address = ws_target
    topic = f"browser.{uuid.uuid4().hex[:8]}"
    tcp, from_browser = collecting_client(address, f"/topic/{topic}.from-browser")
    proc = subprocess.Popen(
        ["node", str(BROWSER_DIR / "stomp_in_chromium.mjs"), ws_url, address.login, address.passcode, topic],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BROWSER_DIR,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().strip()
        assert ready == "READY", (ready, proc.stderr.read() if proc.stderr else "")
        tcp.publish(f"/topic/{topic}", {"event": "face.recognized", "subject": "Lin-Manuel Miranda"})
        received = json.loads(proc.stdout.readline())
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        tcp.close()
    assert received == [{"body": '{"event":"face.recognized","subject":"Lin-Manuel Miranda"}',
                         "destination": f"/topic/{topic}"}]
    eventually(lambda: from_browser, timeout_s=5, what="the browser's publication")
    assert [json.loads(b) for b in from_browser] == [{"hello": "from chromium"}]
