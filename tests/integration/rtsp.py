"""GStreamer's RTSP server (tests/rtsp_server.py, run by the system python3) as a test helper."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


class RtspServer:
    """GStreamer's RTSP server in a subprocess (system python3 with python3-gi)."""

    SCRIPT = Path(__file__).resolve().parents[1] / "rtsp_server.py"

    def __init__(self, port: int, clip: str, mounts: list[str] | None = None) -> None:
        """Serves ``clip`` at each mount (its own pipeline each), "clip" by default."""
        self.port, self.clip = port, clip
        self.mounts = mounts or ["clip"]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> "RtspServer":
        self.proc = subprocess.Popen(["/usr/bin/python3", str(self.SCRIPT), str(self.port),
                                      *[f"{m}={self.clip}" for m in self.mounts]],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "READY"
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.mounts[0]}"


def require_rtsp() -> None:
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                           capture_output=True)
    if probe.returncode != 0:
        reason = "GStreamer RTSP server missing (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi)"
        if os.environ.get("FWTEST_REQUIRE_RTSP") == "1":
            pytest.fail(f"{reason} (FWTEST_REQUIRE_RTSP=1)")
        pytest.skip(reason)
