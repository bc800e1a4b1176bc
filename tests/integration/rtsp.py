"""GStreamer's RTSP server (tests/rtsp_server.py, run by the system python3) as a test helper.

Imports no pytest (nor conftest): bench/watcher.py uses it too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


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
