#!/usr/bin/env python3
"""The web console in a real browser: how fast the live page comes up, and how soon an event is on screen.

Starts `facewatch serve` (SQLite, embedded broker) in a temporary folder, enrols Lin-Manuel Miranda and
Alex Lacamoire, registers ``--cameras`` cameras (5) on the shared clip (looped file cameras, or the clip
over GStreamer's RTSP server with ``--source rtsp``: that stream ends every 11 s and the camera reconnects),
and drives Debian's headless Chromium with tests/browser/console_bench.mjs:

- page load: ``--loads`` loads of /live (after one warm-up), each in a fresh browser context (a first
  visit: nothing cached), signed in with an API key; first paint and first contentful paint (the
  browser's paint timing) and "live ready", the page's own mark once it shows every camera's card and
  is subscribed to their events; medians.
- event-to-screen: for ``--seconds``, the live page and, as the baseline, a bare page with nothing but
  @stomp/stompjs subscribed to the same topic over the same WebSocket endpoint, side by side. Per
  event: the moment the live page put it in its DOM (its facewatch:event-shown mark) or the bare page's
  STOMP client handed it over, minus the event's ``time`` (when the camera's worker made it); p50/p95
  over the events both pages saw. The difference is what the console adds to raw delivery.

Last line: ``console first_paint_ms=<> live_ready_ms=<> event_to_screen_p95_ms=<> ws_delivery_p95_ms=<>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, ROOT, Server, free_port, make_config, pct  # noqa: E402

from tests.integration.repo_server import Http, enrol  # noqa: E402
from tests.integration.rtsp import RtspServer  # noqa: E402
from vision.pack import DEFAULT_PACK  # noqa: E402

CLIP = DATA / "video" / "short_hamilton_clip.mp4"
DRIVER = ROOT / "tests" / "browser" / "console_bench.mjs"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cameras_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facewatch", "cameras", *args],
                          env={**server.env, "FACEWATCH_API_KEY": server.key}, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def wait_running(server: Server, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    states: list[str] = []
    while time.monotonic() < deadline:
        listed = cameras_cli(server, "list", "--json")
        if listed.returncode == 0:
            states = [c.get("status", {}).get("state", "?") for c in json.loads(listed.stdout)]
            if states.count("running") == count:
                return
        time.sleep(1)
    raise RuntimeError(f"cameras not running: {states}")


def latencies(events: list[dict[str, Any]], ids: set[str]) -> dict[str, float]:
    """Event id -> milliseconds from the event's ``time`` to the moment it was first seen, for ``ids``."""
    first: dict[str, float] = {}
    for e in events:
        if e["id"] in ids and e["id"] not in first:
            first[e["id"]] = e["at"] - e["time"] * 1000.0
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=5)
    parser.add_argument("--source", choices=("file", "rtsp"), default="file")
    parser.add_argument("--max-fps", type=float, default=2.0, help="each camera's analysed frames per second")
    parser.add_argument("--cooldown-s", type=float, default=1.0, help="each camera's cool-down per subject")
    parser.add_argument("--loads", type=int, default=10, help="page loads measured (after one warm-up)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the event-to-screen window")
    parser.add_argument("--models", default=os.environ.get("FWTEST_MODELS_DIR"),
                        help="the model pack's folder (default: $FWTEST_MODELS_DIR, else the config's)")
    parser.add_argument("--shots", help="keep a screenshot of the live page here")
    parser.add_argument("--log", help="keep the server's log here")
    parser.add_argument("--raw", help="write what the browser measured (JSON) here")
    args = parser.parse_args()
    models = Path(args.models or make_config(None).models_dir(DEFAULT_PACK.name))

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        rtsp = None
        if args.source == "rtsp":
            rtsp = RtspServer(free_port(), str(CLIP), [f"cam{i}" for i in range(args.cameras)]).start()
        log = Path(args.log) if args.log else Path(tmp) / "serve.log"
        server = Server(Path(tmp), models, log, FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(CLIP.parent)]),
                        # its RTSP server is on loopback, which cameras may not reach by default
                        FACEWATCH_WATCHER__BLOCKED_NETWORKS=json.dumps(["169.254.0.0/16"]))
        try:
            http = Http(f"http://127.0.0.1:{server.port}", {"x-api-key": server.key})
            deadline = time.monotonic() + 60
            while http.call("GET", "/api/v1/health").status != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not answer /api/v1/health")
                time.sleep(0.2)
            enrol(http, DATA, "hamilton", ["lin_manuel_miranda", "alex_lacamoire"])
            for i in range(args.cameras):
                url = f"rtsp://127.0.0.1:{rtsp.port}/cam{i}" if rtsp else CLIP.as_uri()
                settings = ["--set", f"max_fps={args.max_fps}", "--set", f"cooldown_s={args.cooldown_s}"]
                if rtsp is None:
                    settings += ["--set", "loop=true"]
                added = cameras_cli(server, "add", f"cam{i}", url, "--gallery", "hamilton", *settings)
                if added.returncode != 0:
                    raise RuntimeError(added.stderr)
            wait_running(server, args.cameras)
            if args.shots:
                Path(args.shots).mkdir(parents=True, exist_ok=True)
            options = {"base": http.base, "apiKey": server.key, "cameras": args.cameras, "loads": args.loads,
                       "seconds": args.seconds, "shots": args.shots}
            done = subprocess.run(["node", str(DRIVER), json.dumps(options)], capture_output=True, text=True,
                                  timeout=args.seconds + 60 * (2 + args.loads), cwd=DRIVER.parent)
            load_after = os.getloadavg()
        finally:
            server.stop()
            if rtsp is not None:
                rtsp.kill()
    if done.returncode != 0 or not done.stdout.strip():
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if args.raw:
        Path(args.raw).write_text(json.dumps(found, indent=1))
    if not found["ok"]:
        print(found["error"], file=sys.stderr)
        return 1
    if found["errors"]:
        print(f"console errors in the browser: {found['errors'][:5]}", file=sys.stderr)
        return 1

    loads = found["loads"]
    def median_of(key: str) -> float:
        return statistics.median(float(load[key]) for load in loads)
    print(f"page load of /live with {args.cameras} cameras, {len(loads)} cold loads (medians, ms): "
          f"first paint {median_of('firstPaint'):.0f}, first contentful paint {median_of('firstContentfulPaint'):.0f}, "
          f"DOMContentLoaded {median_of('domContentLoaded'):.0f}, load {median_of('load'):.0f}, "
          f"live ready {median_of('ready'):.0f} (max {max(float(x['ready']) for x in loads):.0f})")

    shown, delivered = found["shown"], found["delivered"]
    both = {e["id"] for e in shown} & {e["id"] for e in delivered}
    on_screen, on_wire = latencies(shown, both), latencies(delivered, both)
    screen, wire = list(on_screen.values()), list(on_wire.values())
    if not both:
        print(f"no event seen by both pages in {args.seconds:g} s (live page {len(shown)}, bare page "
              f"{len(delivered)})", file=sys.stderr)
        return 1
    print(f"events in {args.seconds:g} s: {len(both)} seen by both pages ({len(shown)} shown, {len(delivered)} "
          f"delivered), {len(both) / args.seconds:.1f}/s")
    print(f"event to screen (live page's DOM): p50 {pct(screen, 50):.0f} ms, p95 {pct(screen, 95):.0f} ms, "
          f"max {max(screen):.0f} ms")
    print(f"event to a bare STOMP page (baseline): p50 {pct(wire, 50):.0f} ms, p95 {pct(wire, 95):.0f} ms, "
          f"max {max(wire):.0f} ms")
    extra = [on_screen[i] - on_wire[i] for i in both]
    print(f"what the console adds, per event: p50 {pct(extra, 50):.0f} ms, p95 {pct(extra, 95):.0f} ms")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"console first_paint_ms={median_of('firstPaint'):.0f} live_ready_ms={median_of('ready'):.0f} "
          f"event_to_screen_p95_ms={pct(screen, 95):.0f} ws_delivery_p95_ms={pct(wire, 95):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
