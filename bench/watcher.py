#!/usr/bin/env python3
"""Concurrent camera streams through the real watcher.

Starts `facewatch serve` (embedded broker, SQLite) in a temporary data folder,
enrols Lin-Manuel Miranda and Alex Lacamoire, makes a 720p H.264 25 fps clip
from the shared one, serves it N times over GStreamer's RTSP server (or reads
it as files at real-time pace, ``--source file``), registers N cameras over
STOMP and, for N = 1, 2, 4, 8, measures per stream over a window:

- analysed frames per second (camera cap ``--max-fps``, default 5);
- frame-to-event latency: a subscriber's receive time minus the wall-clock
  time at which the frame that decided the event was decoded;
- CPU (% of one core) and RSS of each worker process.

A stream "keeps 5 fps" when it is analysed at >= 4.9 fps over the window: the
cap paces frames at exactly 5 fps, so a stream that keeps up measures 5.0 give
or take one frame per window.

``--soak SECONDS`` instead runs ``--soak-streams`` cameras that long and
prints worker RSS per minute; memory is flat when the last minute is within
10 % of the second (the first holds model loading).

Last line: ``watcher streams_at_5fps=<max N with every stream at 5 fps> p95_latency_ms=<p95 at that N>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, ROOT, pct

from broker.client import BrokerAddress, BusClient
from tests.integration.repo_server import RepoServer, enrol, free_port
from tests.integration.rtsp import RtspServer

CLIP = DATA / "video" / "short_hamilton_clip.mp4"
API = "/queue/facewatch.api"


def make_720p_clip(target: Path, minutes: float) -> Path:
    """The shared clip upscaled to 1280x720, re-timed to 25 fps (H.264), and
    repeated (packets copied, timestamps shifted) to last ``minutes``: an RTSP
    stream that ended every 11 s would spend its reconnects inside the window."""
    base = target.with_name(target.stem + "-base.mp4")
    if not base.exists():
        encode_720p(base)
    with av.open(str(base)) as src:
        stream = src.streams.video[0]
        if stream.duration is None or stream.time_base is None:
            raise RuntimeError(f"{base}: no duration")
        one = float(stream.duration * stream.time_base)
    repeats = max(1, int(minutes * 60 / one) + 1)
    looped = target.with_name(f"{target.stem}-x{repeats}.mp4")
    if looped.exists():
        return looped
    partial = looped.with_suffix(".part.mp4")
    with av.open(str(base)) as src, av.open(str(partial), "w") as out:
        in_stream = src.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        span = in_stream.duration
        if span is None:
            raise RuntimeError(f"{base}: no duration")
        for copy in range(repeats):
            src.seek(0)
            for packet in src.demux(in_stream):
                if packet.dts is None or packet.pts is None:
                    continue
                packet.pts += copy * span
                packet.dts += copy * span
                packet.stream = out_stream
                out.mux(packet)
    partial.rename(looped)
    return looped


def encode_720p(target: Path) -> None:
    partial = target.with_suffix(".part.mp4")
    with av.open(str(CLIP)) as src, av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": "50"}
        for frame in src.decode(video=0):
            image = np.asarray(cv2.resize(frame.to_ndarray(format="bgr24"), (1280, 720),
                                          interpolation=cv2.INTER_LINEAR), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    partial.rename(target)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    def __init__(self, workdir: Path, clip: Path, source: str, max_fps: float) -> None:
        models = ROOT / "data" / "models" / "faceplugin-face-recognition-js-0.0.1"
        self.server = RepoServer(workdir / "data", models, None,
                                 FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(clip.parent)]),
                                 FACEWATCH_WATCHER__MAX_CAMERAS_PER_TENANT="64", FACEWATCH_LOG_LEVEL="warning",
                                 # its RTSP server is on loopback, which cameras may not reach by default
                                 FACEWATCH_WATCHER__BLOCKED_NETWORKS=json.dumps(["169.254.0.0/16"]))
        self.clip, self.source, self.max_fps = clip, source, max_fps
        self.rtsp: RtspServer | None = None
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def start(self, mounts: int) -> None:
        tenant = self.server.create_tenant("bench")
        self.key = tenant["api_key"]
        self.server.start()
        enrol(self.server.http(api_key=self.key), DATA, "hamilton", ("lin_manuel_miranda", "alex_lacamoire"))
        creds = json.loads((self.server.data_dir / "broker-credentials.json").read_text())
        self.bus = BusClient(BrokerAddress("127.0.0.1", self.server.stomp_port, creds["login"], creds["passcode"]))
        self.bus.connect()
        self.bus.subscribe("/topic/watcher.*", self._on_event)
        if self.source == "rtsp":
            self.rtsp = RtspServer(free_port(), str(self.clip), mounts=[f"s{i}" for i in range(mounts)]).start()

    def _on_event(self, message: Any) -> None:
        received = time.time()
        event = json.loads(message.body)
        with self._lock:
            self.events.append((received, event))

    def call(self, method: str, path: str, body: Any = b"") -> Any:
        reply = self.bus.request(API, body, {"method": method, "path": path, "x-api-key": self.key}, timeout_s=60)
        assert reply.status < 300, (reply.status, reply.body)
        return reply.json() if reply.body and reply.body != b"null" else None

    def url(self, index: int) -> str:
        if self.rtsp is not None:
            return f"rtsp://127.0.0.1:{self.rtsp.port}/s{index}"
        return f"file://{self.clip}"

    def register(self, count: int) -> list[str]:
        ids = [f"bench{i}" for i in range(count)]
        for index, camera in enumerate(ids):
            self.call("POST", "/api/v1/cameras", {"id": camera, "url": self.url(index), "loop": True,
                                                  "galleries": ["hamilton"], "max_fps": self.max_fps,
                                                  "cooldown_s": 0, "attach_crop": True})
        return ids

    def statuses(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {camera: self.call("GET", f"/api/v1/cameras/{camera}/status") for camera in ids}

    def remove(self, ids: list[str]) -> None:
        for camera in ids:
            self.call("DELETE", f"/api/v1/cameras/{camera}")

    def stop(self) -> None:
        self.bus.close()
        self.server.stop()
        if self.rtsp is not None:
            self.rtsp.kill()


def wait_running(service: Service, ids: list[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = service.statuses(ids)
        if all(s["state"] == "running" and (s["stats"].get("analysed") or 0) > 0 for s in statuses.values()):
            return
        time.sleep(1)
    raise RuntimeError(f"cameras did not start: {service.statuses(ids)}")


def measure(service: Service, count: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    ids = service.register(count)
    try:
        wait_running(service, ids)
        time.sleep(warmup_s)
        before = service.statuses(ids)
        cpu_before = {c: cpu_seconds(s["worker"]["pid"]) for c, s in before.items()}
        started = time.time()
        mark = len(service.events)
        time.sleep(window_s)
        after = service.statuses(ids)
        elapsed = time.time() - started
        per_stream = []
        for camera in ids:
            b, a = before[camera], after[camera]
            if a["worker"]["pid"] != b["worker"]["pid"]:
                raise RuntimeError(f"{camera}: worker restarted during the window")
            fps = (a["stats"]["analysed"] - b["stats"]["analysed"]) / (a["stats"]["time"] - b["stats"]["time"])
            cpu = (cpu_seconds(a["worker"]["pid"]) - cpu_before[camera]) / elapsed * 100
            per_stream.append({"camera": camera, "fps": fps, "cpu_pct": cpu, "rss_mib": a["stats"]["rss_mib"],
                               "dropped": a["stats"]["dropped"] - b["stats"]["dropped"],
                               "analysis_ms_p50": a["stats"]["analysis_ms_p50"]})
        with service._lock:
            window = [(r, e) for r, e in service.events[mark:] if e.get("type") in ("face.recognized", "face.unknown")]
        latencies = [(r - e["analysed_frame_time"]) * 1000 for r, e in window]
        return {"n": count, "streams": per_stream, "events": len(latencies),
                "latency_p50": pct(latencies, 50) if latencies else float("nan"),
                "latency_p95": pct(latencies, 95) if latencies else float("nan")}
    finally:
        service.remove(ids)


def soak(service: Service, count: int, seconds: float) -> None:
    ids = service.register(count)
    try:
        wait_running(service, ids)
        per_minute: list[float] = []
        samples: list[float] = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(10)
            samples.append(statistics.mean(s["stats"]["rss_mib"] for s in service.statuses(ids).values()))
            if len(samples) == 6:
                per_minute.append(statistics.mean(samples))
                print(f"  minute {len(per_minute):2d}: mean worker RSS {per_minute[-1]:.1f} MiB", flush=True)
                samples = []
        if len(per_minute) >= 3:
            ratio = per_minute[-1] / per_minute[1]
            print(f"soak streams={count} minutes={len(per_minute)} rss_second_minute={per_minute[1]:.1f} "
                  f"rss_last_minute={per_minute[-1]:.1f} ratio={ratio:.3f}")
    finally:
        service.remove(ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,4,8", help="comma-separated N values")
    parser.add_argument("--source", choices=("rtsp", "file"), default="rtsp")
    parser.add_argument("--max-fps", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after all cameras run")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per N")
    parser.add_argument("--soak", type=float, default=0.0, help="instead: run --soak-streams cameras this long")
    parser.add_argument("--soak-streams", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fw-bench-watcher-") as tmp:
        workdir = Path(tmp)
        minutes = (args.soak or (args.warmup + args.window + 30) * len(args.streams.split(","))) / 60 + 1
        clip = make_720p_clip(Path(tempfile.gettempdir()) / "facewatch-bench-720p25.mp4", minutes)
        counts = [int(n) for n in args.streams.split(",")]
        service = Service(workdir, clip, args.source, args.max_fps)
        service.start(max(counts + [args.soak_streams]))
        try:
            if args.soak:
                soak(service, args.soak_streams, args.soak)
                return 0
            best_n, best_p95 = 0, float("nan")
            print(f"source={args.source} clip=1280x720 H.264 25 fps, cap {args.max_fps} fps, "
                  f"window {args.window:.0f}s, {os.cpu_count()} CPUs")
            for count in counts:
                result = measure(service, count, args.warmup, args.window)
                fps = [s["fps"] for s in result["streams"]]
                print(f"N={count}: fps min {min(fps):.2f} median {statistics.median(fps):.2f}; "
                      f"latency p50 {result['latency_p50']:.0f} ms p95 {result['latency_p95']:.0f} ms "
                      f"({result['events']} events); worker CPU "
                      f"{statistics.median(s['cpu_pct'] for s in result['streams']):.0f}% median, RSS "
                      f"{statistics.median(s['rss_mib'] for s in result['streams']):.0f} MiB median; "
                      f"analysis {statistics.median(s['analysis_ms_p50'] for s in result['streams']):.1f} ms/frame",
                      flush=True)
                if min(fps) >= 0.98 * args.max_fps and count > best_n:
                    best_n, best_p95 = count, result["latency_p95"]
            print(f"watcher streams_at_5fps={best_n} p95_latency_ms={best_p95:.0f}")
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
