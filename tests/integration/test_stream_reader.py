"""StreamReader on the real shared clip (PyAV) and on a source that is not there."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.waiting import eventually
from watcher.networks import parse_networks
from watcher.stream import CameraStatus, StreamOptions, StreamReader

from .conftest import require_rtsp
from .rtsp import RtspServer

pytestmark = pytest.mark.data


def _clip(shared_data: Path) -> str:
    return str(shared_data / "video" / "short_hamilton_clip.mp4")


def test_file_decodes_every_frame_when_the_consumer_keeps_up(shared_data: Path) -> None:
    statuses: list[CameraStatus] = []
    reader = StreamReader(StreamOptions(_clip(shared_data), realtime=False), statuses.append, threading.Event())
    frames = list(reader.frames())
    assert reader.decoded == 275
    assert len(frames) + reader.dropped == 275
    assert frames[0].image.shape == (360, 640, 3)
    assert [s.state for s in statuses] == ["starting", "running", "stopped"]


def test_slow_analysis_gets_the_newest_frame_at_real_time_pace(shared_data: Path) -> None:
    reader = StreamReader(StreamOptions(_clip(shared_data), realtime=True, max_fps=5), lambda s: None,
                          threading.Event())
    start = time.monotonic()
    taken = []
    for frame in reader.frames():
        taken.append(frame)
        time.sleep(0.05)  # slow analysis, simulated: real-time pacing is what this tests, no event to await
    elapsed = time.monotonic() - start
    assert 8.0 < elapsed < 12.0  # 9.2 s of video, delivered at its own pace
    assert 40 <= len(taken) <= 50  # about 5 per second
    assert reader.dropped > 200  # the rest were replaced by newer frames, not queued
    assert all(b.index > a.index for a, b in zip(taken, taken[1:]))


def test_stop_ends_a_looping_file(shared_data: Path) -> None:
    stop = threading.Event()
    reader = StreamReader(StreamOptions(_clip(shared_data), loop=True, realtime=False), lambda s: None, stop)
    for count, _ in enumerate(reader.frames()):
        if count == 400:  # past the end: it looped
            stop.set()
    assert reader.decoded > 275


def test_unreachable_source_reconnects_then_fails_with_a_reason(tmp_path: Path) -> None:
    statuses: list[CameraStatus] = []
    options = StreamOptions("rtsp://127.0.0.1:1/nothing", open_timeout_s=2, reconnect_initial_s=0.1, max_attempts=3)
    reader = StreamReader(options, statuses.append, threading.Event())
    assert list(reader.frames()) == []
    states = [s.state for s in statuses]
    assert states == ["starting", "reconnecting", "reconnecting", "failed"]  # failed is the last word
    assert [s.attempt for s in statuses if s.state == "reconnecting"] == [1, 2]
    assert statuses[3].reason  # says why
    missing = StreamReader(StreamOptions(str(tmp_path / "no.mp4"), max_attempts=1), statuses.append, threading.Event())
    assert list(missing.frames()) == []
    assert statuses[-1].state == "failed"
    assert "No such file" in statuses[-1].reason or "FileNotFound" in statuses[-1].reason


def test_rtsp_stream_survives_a_server_restart(shared_data: Path) -> None:
    from .repo_server import free_port

    require_rtsp()
    server = RtspServer(free_port(), _clip(shared_data)).start()
    statuses: list[CameraStatus] = []
    stop = threading.Event()
    reader = StreamReader(StreamOptions(server.url, open_timeout_s=5, read_timeout_s=3, reconnect_initial_s=0.3,
                                        reconnect_max_s=1.0), statuses.append, stop)
    before, after = 0, 0
    restarted = False
    deadline = time.monotonic() + 60
    try:
        for frame in reader.frames():
            assert frame.image.shape == (360, 640, 3)
            if not restarted:
                before += 1
                if before == 20:
                    server.kill()  # mid-stream; back once the reader has seen it gone (it decodes on its thread)
                    eventually(lambda: "reconnecting" in [s.state for s in statuses], timeout_s=30,
                               what="the reader to notice the server gone")
                    server.start()
                    restarted = True
            else:
                after += 1
                if after == 20 or time.monotonic() > deadline:
                    stop.set()
    finally:
        stop.set()
        server.kill()
    states = [s.state for s in statuses]
    assert before == 20 and after == 20
    assert states[:2] == ["starting", "running"]
    assert "reconnecting" in states
    assert states[states.index("reconnecting"):].count("running") >= 1  # and running again
    assert states[-1] == "stopped"


class _Recorder(http.server.HTTPServer):
    """Records the path of every request; ``/cam`` redirects to ``/secret`` on the same server."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _RedirectOnce)


class _RedirectOnce(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.server.paths.append(self.path)
        if self.path == "/cam":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/secret")
        else:
            self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[_Recorder]:
    server = _Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_camera_on_a_blocked_network_is_not_connected_to_and_an_http_redirect_is_not_followed(
        http_server: _Recorder) -> None:
    server, paths = http_server, http_server.paths
    url = f"http://127.0.0.1:{server.server_port}/cam"
    # Loopback blocked: the reader refuses before connecting, and says why.
    statuses: list[CameraStatus] = []
    options = StreamOptions(url, open_timeout_s=2, reconnect_initial_s=0.05, max_attempts=1,
                            blocked_networks=parse_networks(["127.0.0.0/8"]))
    assert list(StreamReader(options, statuses.append, threading.Event()).frames()) == []
    assert statuses[-1].state == "failed" and "127.0.0.0/8" in statuses[-1].reason and paths == []
    # Loopback allowed (only link-local blocked): it connects, and its redirect is not followed...
    options = replace(options, blocked_networks=parse_networks(["169.254.0.0/16"]))
    assert list(StreamReader(options, statuses.append, threading.Event()).frames()) == []
    assert paths == ["/cam"]
    # ...as FFmpeg would by itself, with no network blocked.
    assert list(StreamReader(replace(options, blocked_networks=()), statuses.append, threading.Event()).frames()) == []
    assert paths == ["/cam", "/cam", "/secret"]
