"""Reading a camera with PyAV: timeouts, reconnect with backoff, newest frame only.

A decoder thread reads as fast as the source gives frames (a file at its own
pace when ``realtime``) and keeps only the newest; the analysis loop takes
that one when it is ready, so a slow analysis drops frames instead of queueing
them. Status changes go to ``on_status`` (starting, running, reconnecting with
attempt and reason, failed with reason, stopped).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import numpy as np

from .networks import NETWORK_SCHEMES, IPNetwork, blocked_reason, url_host

__all__ = ("StreamOptions", "VideoFrame", "CameraStatus", "StreamReader", "END_OF_FILE")

END_OF_FILE = "end of file"  # the reason of the "stopped" status of a file played to its end (loop off)

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class StreamOptions:
    url: str
    rtsp_transport: str = "tcp"  # tcp | udp
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    loop: bool = False  # files: start again at the end
    realtime: bool = True  # files: deliver at the video's own pace
    max_fps: float = 0.0  # analysis cap; 0 = as fast as frames come
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    # Failures before "failed" while the source has never run; 0 = never give up.
    # A camera that has run once is retried forever: cameras come back.
    max_attempts: int = 5
    input_format: str | None = None  # "v4l2" for /dev/video* devices
    # A network camera's host is checked against these at each open (watcher/networks.py); with any,
    # an http camera's redirects are not followed (one could lead into them).
    blocked_networks: tuple[IPNetwork, ...] = ()
    # False: a network camera is not read with a demuxer that opens URLs of its own (an HLS or DASH
    # playlist names segments on any host, unchecked).
    allow_playlists: bool = True


@dataclass(slots=True, frozen=True)
class VideoFrame:
    image: np.ndarray  # BGR, converted only for frames that are analysed
    index: int  # frames decoded since the stream started
    stream_time_s: float  # presentation time in the stream
    wall_time: float  # when it was decoded (epoch seconds)


@dataclass(slots=True, frozen=True)
class CameraStatus:
    state: str  # starting | running | reconnecting | failed | stopped
    attempt: int = 0
    reason: str = ""


# Demuxers that open URLs named inside what they read: playlists (HLS, DASH), concat lists, IMF, SDP
# (RTP addresses), image2 (patterns).
NESTED_DEMUXERS = frozenset({"hls", "dash", "concat", "imf", "sdp", "image2"})


@functools.cache
def _demuxers_opening_nothing() -> str:
    """FFmpeg's format_whitelist: every format this build has but those (a demuxer's name is a list, such
    as "mov,mp4,m4a,3gp,3g2,mj2": FFmpeg takes it when any of its names is listed)."""
    names = {name for listed in av.formats_available for name in listed.split(",")}
    return ",".join(sorted(names - NESTED_DEMUXERS))


class StreamReader:
    def __init__(self, options: StreamOptions, on_status: Callable[[CameraStatus], None],
                 stop: threading.Event) -> None:
        self.options = options
        self.on_status = on_status
        self.stop = stop
        self._latest: tuple[av.VideoFrame, int, float, float] | None = None
        self._cond = threading.Condition()
        self._ended = False
        self.decoded = 0
        self.dropped = 0  # decoded frames nobody took before a newer one arrived
        self._attempt = 0
        self._has_run = False
        self._failed = False
        self.finished = False  # a file (loop off) played to its end

    def _open(self) -> av.container.InputContainer:
        options = {}
        parts = urlsplit(self.options.url)
        scheme = parts.scheme.lower()
        if scheme == "rtsp":
            options["rtsp_transport"] = self.options.rtsp_transport
        if self.options.blocked_networks and scheme in NETWORK_SCHEMES:
            try:
                host, port = url_host(self.options.url)
            except ValueError as exc:
                raise PermissionError(f"the camera's URL: {exc}") from None
            reason = blocked_reason(host, port, self.options.blocked_networks)
            if reason is not None:
                raise PermissionError(reason)
            if scheme in ("http", "https"):
                options["max_redirects"] = "0"
        if not self.options.allow_playlists and scheme in NETWORK_SCHEMES:
            options["format_whitelist"] = _demuxers_opening_nothing()
        return av.open(self.options.url, format=self.options.input_format, options=options,
                       timeout=(self.options.open_timeout_s, self.options.read_timeout_s))

    def _decode_once(self) -> None:
        """Decode until the stream ends or fails; raises on failure."""
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self.on_status(CameraStatus("running"))
            self._attempt = 0
            self._has_run = True
            started = time.monotonic()
            first_pts: float | None = None
            time_base = stream.time_base  # None: timestamps in no known unit, taken as missing
            for frame in container.decode(stream):
                if self.stop.is_set():
                    return
                pts = float(frame.pts * time_base) if frame.pts is not None and time_base is not None else 0.0
                if self.options.realtime and not self._live:
                    first_pts = pts if first_pts is None else first_pts
                    delay = (pts - first_pts) - (time.monotonic() - started)
                    if delay > 0 and self.stop.wait(delay):
                        return
                # Colour conversion waits until the frame is taken: most
                # frames of a 25 fps camera analysed at 5 fps are dropped.
                self._publish((frame, self.decoded, pts, time.time()))
                self.decoded += 1

    @property
    def _live(self) -> bool:
        if self.options.input_format is not None:  # a capture device
            return True
        return "://" in self.options.url and not self.options.url.startswith("file://")

    def _publish(self, frame: tuple[av.VideoFrame, int, float, float]) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1
            self._latest = frame
            self._cond.notify()

    def _run(self) -> None:
        self._attempt = 0
        delay = self.options.reconnect_initial_s
        self.on_status(CameraStatus("starting"))
        while not self.stop.is_set():
            try:
                self._decode_once()
                if self.stop.is_set():
                    break
                if not self._live and self.options.loop:
                    continue
                if not self._live:
                    self.finished = True
                    break  # a file that ended
                reason = "stream ended"
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self._attempt == 0:  # it ran since the last failure: back off from the start
                delay = self.options.reconnect_initial_s
            self._attempt += 1
            if not self._has_run and self.options.max_attempts and self._attempt >= self.options.max_attempts:
                self._failed = True
                self.on_status(CameraStatus("failed", self._attempt, reason))
                break
            self.on_status(CameraStatus("reconnecting", self._attempt, reason))
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, self.options.reconnect_max_s)
        with self._cond:
            self._ended = True
            self._cond.notify()

    def frames(self) -> Generator[VideoFrame, None, None]:
        """The newest frame each time the caller is ready, at most ``max_fps``."""
        thread = threading.Thread(target=self._run, name=f"decode:{self.options.url}", daemon=True)
        thread.start()
        interval = 1.0 / self.options.max_fps if self.options.max_fps > 0 else 0.0
        next_at = 0.0
        try:
            while not self.stop.is_set():  # once stopped, not one more frame
                with self._cond:
                    while self._latest is None and not self._ended and not self.stop.is_set():
                        self._cond.wait(0.5)
                    if self._latest is None:
                        return
                    (raw, index, pts, wall), self._latest = self._latest, None
                yield VideoFrame(raw.to_ndarray(format="bgr24"), index, pts, wall)
                if interval:
                    next_at = max(next_at + interval, time.monotonic())
                    if self.stop.wait(max(0.0, next_at - time.monotonic())):
                        return
        finally:
            self.stop.set()
            thread.join(timeout=self.options.read_timeout_s + 5)
            if not self._failed:  # "failed" is the last word of a source that never ran
                self.on_status(CameraStatus("stopped", reason=END_OF_FILE if self.finished else ""))
