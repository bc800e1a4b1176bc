"""StreamReader on the real shared clip (PyAV) and on a source that is not there."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
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


def test_a_playlist_is_not_read_unless_allowed_so_its_segments_are_not_fetched(
        tmp_path: Path, shared_data: Path) -> None:
    # An HLS playlist names segment URLs FFmpeg opens itself, on any host: none of them is checked.
    with av.open(_clip(shared_data)) as source, av.open(str(tmp_path / "seg.ts"), "w", format="mpegts") as segment:
        video = source.streams.video[0]
        copy = segment.add_stream_from_template(video)
        for count, packet in enumerate(p for p in source.demux(video) if p.dts is not None):
            packet.stream = copy
            segment.mux(packet)
            if count == 50:
                break
    paths: list[str] = []

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            paths.append(self.path)

    server = http.server.HTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        (tmp_path / "cam.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n"
                                           f"{base}/seg.ts\n#EXT-X-ENDLIST\n")
        options = StreamOptions(f"{base}/cam.m3u8", open_timeout_s=3, realtime=False, max_attempts=1,
                                allow_playlists=False)
        statuses: list[CameraStatus] = []
        assert list(StreamReader(options, statuses.append, threading.Event()).frames()) == []
        assert statuses[-1].state == "failed" and paths == ["/cam.m3u8"]  # the segment never asked for
        frames = StreamReader(replace(options, allow_playlists=True), lambda s: None, threading.Event()).frames()
        first = next(frames, None)
        frames.close()  # a network stream is read until stopped: closing stops it
        assert first is not None and "/seg.ts" in paths  # what allowing it means
    finally:
        server.shutdown()
        server.server_close()
