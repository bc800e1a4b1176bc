#!/usr/bin/python3
"""A real RTSP server for the tests: GStreamer's, from Debian's packages.

Run with the system Python (python3-gi lives there, not in the venv):
    /usr/bin/python3 tests/rtsp_server.py PORT MOUNT=FILE [MOUNT=FILE ...]
Serves each H.264 mp4 without re-encoding at rtsp://127.0.0.1:PORT/MOUNT and
prints "READY" once listening. SIGTERM stops it.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    Gst.init(None)
    port, mounts = sys.argv[1], sys.argv[2:]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    for spec in mounts:
        mount, path = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )")
        factory.set_shared(True)
        server.get_mount_points().add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {port}", flush=True)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
