#!/usr/bin/env python3
"""Sightings: ingest rate through the real write path, search by face over a million sightings,
catch-up of a client that missed 10,000.

Ingest: a real `facewatch serve` (SQLite, embedded broker) in a temporary data
folder, with ``--cameras`` real cameras running the shared clip (looped, 5 fps
cap). First with sightings off (``sightings.enabled: false``): each camera's
analysed fps over ``--window`` seconds. Then, in the same run, a fresh server
with sightings on: the same cameras, while this process puts ``--rate`` face
events a second on the workers' queue (copies of a real face.unknown event of
the clip: crop, embedding, decision; under a registered, stopped camera), for
``--window`` seconds; measured: sightings stored per second (from the first
event sent until the last one stored) and each camera's analysed fps over the
same window.

Search: ``SightingIndex`` with 1,000,000 sightings over 30 days (daily
partitions): the enrolled people's real faces seen at random times among
synthetic L2-normalised vectors; real probe faces (obama1.jpg at 5 sizes,
kit_harington, alex_lacamoire); p50/p95 of a search (top 50) without a time
filter and with the last 24 hours, with the configured options (prescan above
100,000 rows), and the same searches as an exact scan of the same rows, in the
same run, with the recall of the prescan against it.

Catch-up: on the sightings server, a follower (sightings/follow.py) is
disconnected, 10,000 sightings are stored, it reconnects (subscribe, catch up
from its cursor, continue live) while 1,000 more arrive; every stored sequence
number must be delivered once, in order.

Last line: ``sightings ingest_per_s=<> search_1m_p95_ms=<> search_1m_24h_p95_ms=<> catchup_lost=<>
catchup_dup=<>``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, ROOT, make_analyzer, make_config, pct

from broker.client import BrokerAddress, BusClient
from events import FaceUnknown
from repo.index import SearchOptions
from sightings.follow import SightingFollower
from sightings.index import IndexOptions, SightingIndex
from tests.event_factory import unknown
from tests.integration.repo_server import RepoServer
from vision.images import decode_image
from watcher.cameras import SIGHTINGS_QUEUE

CLIP = DATA / "video" / "short_hamilton_clip.mp4"
MODELS = ROOT / "data" / "models" / "faceplugin-face-recognition-js-0.0.1"
API = "/queue/facewatch.api"
DAY = 86400.0


def models_dir() -> Path:
    return Path(os.environ.get("FWTEST_MODELS_DIR", MODELS))


# -- a server with cameras ------------------------------------------------------------------
class Bench:
    def __init__(self, workdir: Path, sightings: bool, cameras: int) -> None:
        self.server = RepoServer(workdir, models_dir(), None,
                                 FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(CLIP.parent)]),
                                 FACEWATCH_SIGHTINGS__ENABLED=str(sightings).lower(), FACEWATCH_LOG_LEVEL="warning",
                                 FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0")
        tenant = self.server.create_tenant("bench")
        self.key, self.tenant_id = tenant["api_key"], tenant["tenant_id"]
        self.server.start()
        creds = json.loads((workdir / "broker-credentials.json").read_text())
        self.address = BrokerAddress("127.0.0.1", self.server.stomp_port, creds["login"], creds["passcode"])
        self.bus = BusClient(self.address, client_name="bench")
        self.bus.connect()
        self.http = self.server.http(api_key=self.key)
        assert self.http.call("POST", "/api/v1/galleries", {"name": "nobody"}).status == 201
        self.cameras = [f"cam{i}" for i in range(cameras)]
        self.unknown: list[dict[str, Any]] = []
        self.bus.subscribe("/topic/watcher.*", self._on_event, receipt=True)
        for camera in self.cameras:
            self.call("POST", "/api/v1/cameras", {"id": camera, "url": f"file://{CLIP}", "loop": True,
                                                  "galleries": ["nobody"], "max_fps": 5, "cooldown_s": 0})
        # The queue's events belong to a camera that exists but runs no worker.
        self.call("POST", "/api/v1/cameras", {"id": "flood", "url": f"file://{CLIP}", "enabled": False,
                                              "galleries": ["nobody"]})

    def _on_event(self, message: Any) -> None:
        event = json.loads(message.body)
        if event.get("type") == FaceUnknown.TYPE and not self.unknown:
            self.unknown.append(event)

    def call(self, method: str, path: str, body: Any = b"") -> Any:
        reply = self.bus.request(API, body, {"method": method, "path": path, "x-api-key": self.key}, timeout_s=60)
        assert reply.status < 300, (reply.status, reply.body)
        return reply.json() if reply.body and reply.body != b"null" else None

    def analysed(self) -> dict[str, tuple[int, float]]:
        out = {}
        for camera in self.cameras:
            stats = self.call("GET", f"/api/v1/cameras/{camera}/status")["stats"]
            out[camera] = (int(stats.get("analysed") or 0), float(stats.get("time") or time.time()))
        return out

    def wait_running(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(n > 0 for n, _ in self.analysed().values()):
                return
            time.sleep(1)
        raise RuntimeError("cameras did not start")

    def newest_seq(self) -> int:
        found = self.http.call("GET", "/api/v1/sightings?limit=1").body["sightings"]
        return int(found[0]["seq"]) if found else 0

    def stop(self) -> None:
        self.bus.close()
        self.server.stop()


def fps(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> list[float]:
    return [(after[c][0] - before[c][0]) / max(1e-9, after[c][1] - before[c][1]) for c in before]


def template_event(bench: Bench, timeout_s: float = 60) -> dict[str, Any]:
    """A real face.unknown of the clip (what a worker queues), else one made alike."""
    deadline = time.monotonic() + timeout_s
    while not bench.unknown and time.monotonic() < deadline:
        time.sleep(0.2)
    if bench.unknown:
        return copy.deepcopy(bench.unknown[0])
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(512).astype(np.float32)
    vector /= np.linalg.norm(vector)
    crop = (DATA / "faces" / "probe" / "obama1.jpg").read_bytes()[:9000]
    return unknown("flood", 1, vector, crop).to_json()


def flood(bench: Bench, template: dict[str, Any], rate: float, count: int, track0: int = 10_000) -> float:
    """Put ``count`` events on the sightings queue at ``rate`` a second; returns when the first went."""
    client = BusClient(bench.address, client_name="flood")
    client.connect()
    template = {**template, "camera": "flood"}
    started = time.monotonic()
    first = time.time()
    try:
        for i in range(count):
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            now = time.time()
            event = {**template, "id": uuid.uuid4().hex, "track": track0 + i, "first_seen": now - 1,
                     "frame": {**template["frame"], "wall_time": now}, "analysed_frame_time": now, "time": now}
            client.publish(SIGHTINGS_QUEUE, event, {"persistent": "true"})
    finally:
        client.close()
    return first


def wait_stored(bench: Bench, target_seq: int, timeout_s: float) -> float:
    """When the sighting numbered ``target_seq`` was stored (polls: the count announces nothing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = bench.http.call("GET", f"/api/v1/sightings?since={target_seq - 1}&limit=1").body["sightings"]
        if found:
            return float(found[0]["stored_at"])
        time.sleep(0.2)
    raise RuntimeError(f"sighting {target_seq} not stored within {timeout_s}s (newest {bench.newest_seq()})")


def measure_fps(bench: Bench, warmup_s: float, window_s: float) -> list[float]:
    bench.wait_running()
    time.sleep(warmup_s)
    before = bench.analysed()
    time.sleep(window_s)
    return fps(before, bench.analysed())


def ingest(workdir: Path, cameras: int, rate: float, warmup_s: float, window_s: float) -> tuple[float, list[float],
                                                                                                 list[float], Bench]:
    off = Bench(workdir / "off", sightings=False, cameras=cameras)
    try:
        fps_off = measure_fps(off, warmup_s, window_s)
    finally:
        off.stop()
    print(f"  history off: cameras' analysed fps {', '.join(f'{f:.2f}' for f in fps_off)}", flush=True)
    on = Bench(workdir / "on", sightings=True, cameras=cameras)
    on.wait_running()
    template = template_event(on)
    time.sleep(warmup_s)
    start_seq = on.newest_seq()
    count = int(rate * window_s)
    before = on.analysed()
    sender = threading.Thread(target=flood, args=(on, template, rate, count))
    first = time.time()
    sender.start()
    sender.join()
    after = on.analysed()
    fps_on = fps(before, after)
    # Sequence numbers are dense: the flood's last is at most start + count + what the cameras added meanwhile.
    last_stored = wait_stored(on, start_seq + count, timeout_s=300)
    stored = on.newest_seq() - start_seq
    per_s = count / (last_stored - first)
    print(f"  history on: {count} events offered at {rate:.0f}/s over {window_s:.0f}s: all stored "
          f"{last_stored - first:.1f}s after the first was sent: {per_s:.0f} sightings/s "
          f"({stored} stored, cameras' own included); cameras' analysed fps {', '.join(f'{f:.2f}' for f in fps_on)}",
          flush=True)
    return per_s, fps_off, fps_on, on


# -- search over a million ---------------------------------------------------------------------
def real_faces() -> tuple[list[np.ndarray], list[str], list[tuple[str, np.ndarray]]]:
    analyzer = make_analyzer(make_config(None, quality__yaw_source="landmarks", models__dir=str(models_dir())))
    faces, names = [], []
    for person in sorted((DATA / "faces" / "enroll").iterdir()):
        for image in sorted(person.iterdir()):
            found = analyzer.analyze(decode_image(image.read_bytes()), max_faces=1)
            if found and found[0].embedding is not None:
                faces.append(found[0].embedding)
                names.append(person.name)
    probes = []
    for name, who in (("obama1.jpg", "obama"), ("obama-240p.jpg", "obama"), ("obama-480p.jpg", "obama"),
                      ("obama-720p.jpg", "obama"), ("obama_small.jpg", "obama"),
                      ("johnsnow_test1.jpg", "kit_harington"), ("alex_lacamoire1.jpg", "alex_lacamoire")):
        found = analyzer.analyze(decode_image((DATA / "faces" / "probe" / name).read_bytes()), max_faces=1)
        if found and found[0].embedding is not None:
            probes.append((who, found[0].embedding))
    return faces, names, probes


def search_bench(size: int, repeats: int, options: SearchOptions) -> tuple[float, float, float, float, float]:
    """p95 ms with the configured options, without and with a 24 h filter; the same as an exact scan; recall."""
    faces, names, probes = real_faces()
    dim = len(faces[0])
    rng = np.random.default_rng(0)
    now = 30 * DAY
    index = SightingIndex(dim, IndexOptions(options, DAY))
    # Each real face is seen 20 times at random times (a person a camera sees again), slightly changed.
    real = np.repeat(np.stack(faces), 20, axis=0)
    real = real + 0.05 * rng.standard_normal(real.shape).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    real_names = [n for n in names for _ in range(20)]
    times = rng.uniform(0, now, len(real))
    index.add("t", [f"{n}-{i}" for i, n in enumerate(real_names)], real, times.tolist(), ["door"] * len(real))
    done = len(real)
    while done < size:  # in chunks: 1M x 512 floats is 2 GB
        n = min(100_000, size - done)
        chunk = rng.standard_normal((n, dim)).astype(np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        index.add("t", [f"s{done + i}" for i in range(n)], chunk, rng.uniform(0, now, n).tolist(),
                  [f"cam{i % 8}" for i in range(n)])
        done += n
    print(f"  {index.size('t')} sightings over 30 days in {len(index._tenant('t').partitions)} daily partitions; "
          f"{len(probes)} real probes", flush=True)

    def timed(start: float | None) -> tuple[list[float], list[list[str]]]:
        for person, probe in probes[:2]:
            index.search("t", probe, 50, start=start)
        samples, results = [], []
        for r in range(repeats):
            person, probe = probes[r % len(probes)]
            began = time.perf_counter()
            hits = index.search("t", probe, 50, start=start)
            samples.append((time.perf_counter() - began) * 1000)
            if r < len(probes):
                results.append([h.sighting_id for h in hits])
        return samples, results

    out = {}
    for label, start in (("all 30 days", None), ("last 24 h", now - DAY)):
        index.options = IndexOptions(options, DAY)
        fast, fast_hits = timed(start)
        index.options = IndexOptions(SearchOptions(exact_max_faces=10**9), DAY)
        exact, exact_hits = timed(start)
        # Recall: of the exact top 10 that are the probe's own person, how many the configured search found.
        kept = total = 0
        for (person, _), f, e in zip(probes, fast_hits, exact_hits):
            own = [h for h in e[:10] if h.startswith(person + "-")]
            total += len(own)
            kept += len(set(own) & set(f))
        out[label] = (pct(fast, 95), pct(exact, 95), kept / max(1, total))
        print(f"  search top 50, {label:<11}: p50 {pct(fast, 50):6.2f} ms p95 {pct(fast, 95):6.2f} ms; "
              f"exact scan of the same rows p50 {pct(exact, 50):6.2f} ms p95 {pct(exact, 95):6.2f} ms; "
              f"recall of the own person's exact top 10: {kept}/{total}", flush=True)
    return out["all 30 days"][0], out["last 24 h"][0], out["all 30 days"][1], out["last 24 h"][1], \
        min(out["all 30 days"][2], out["last 24 h"][2])


# -- catch-up --------------------------------------------------------------------------------------
def catch_up(bench: Bench, template: dict[str, Any], missed: int, live: int, rate: float) -> tuple[int, int, bool]:
    got: list[int] = []
    lock = threading.Lock()

    def on_sighting(sighting: dict[str, Any]) -> None:
        with lock:
            got.append(int(sighting["seq"]))

    headers = {"x-api-key": bench.key}
    first_bus = BusClient(bench.address, client_name="follower")
    first_bus.connect()
    follower = SightingFollower(first_bus, bench.tenant_id, headers, on_sighting)
    follower.start()
    cursor = follower.cursor
    follower.stop()
    first_bus.close()  # gone: it misses what follows
    start_seq = bench.newest_seq()
    flood(bench, template, rate, missed, track0=1_000_000)
    wait_stored(bench, start_seq + missed, timeout_s=300)
    print(f"  follower away at cursor {cursor}; {bench.newest_seq() - cursor} sightings stored meanwhile", flush=True)
    got.clear()
    bus = BusClient(bench.address, client_name="follower")
    bus.connect()
    follower = SightingFollower(bus, bench.tenant_id, headers, on_sighting, cursor=cursor)
    sender = threading.Thread(target=flood, args=(bench, template, rate, live, 2_000_000))
    before_live = bench.newest_seq()
    began = time.monotonic()
    sender.start()  # live ones arrive during the catch-up
    follower.start()
    caught = time.monotonic() - began
    sender.join()
    wait_stored(bench, before_live + live, timeout_s=60)  # (sequence numbers are dense)
    end_seq = bench.newest_seq()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if got and got[-1] >= end_seq:
                break
        time.sleep(0.1)
    follower.stop()
    bus.close()
    expected = list(range(cursor + 1, end_seq + 1))
    lost = len(set(expected) - set(got))
    dup = len(got) - len(set(got))
    in_order = got == sorted(got)
    print(f"  reconnected: {len(got)} delivered ({len(expected)} expected), catch-up read in {caught:.1f}s "
          f"with {live} live ones arriving meanwhile ({follower.state.duplicates} duplicates dropped by the client, "
          f"{follower.catch_ups} catch-up(s)); lost {lost}, doubled {dup}, in order: {in_order}", flush=True)
    return lost, dup, in_order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--rate", type=float, default=600.0, help="face events offered per second")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=1_000_000, help="sightings in the search index")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--missed", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=1_000)
    parser.add_argument("--skip", default="", help="comma-separated: ingest, search, catchup")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    ingest_per_s = search_p95 = search_24h_p95 = float("nan")
    lost = dup = -1
    ok = True
    with tempfile.TemporaryDirectory(prefix="fw-bench-sightings-") as tmp:
        bench: Bench | None = None
        try:
            if "ingest" not in skip or "catchup" not in skip:
                print(f"ingest: {args.cameras} camera(s) on the shared clip (5 fps cap), SQLite", flush=True)
                ingest_per_s, fps_off, fps_on, bench = ingest(Path(tmp), args.cameras, args.rate, args.warmup,
                                                              args.window)
                slower = statistics.mean(fps_off) - statistics.mean(fps_on)
                print(f"  analysed fps: {statistics.mean(fps_off):.2f} off, {statistics.mean(fps_on):.2f} on "
                      f"({slower:+.2f} lost)", flush=True)
                ok &= ingest_per_s >= 500 and min(fps_on) >= 0.98 * min(fps_off)
            if "catchup" not in skip and bench is not None:
                print(f"catch-up: {args.missed} missed, {args.live} live during the catch-up", flush=True)
                lost, dup, in_order = catch_up(bench, template_event(bench), args.missed, args.live, args.rate)
                ok &= lost == 0 and dup == 0 and in_order
        finally:
            if bench is not None:
                bench.stop()
    if "search" not in skip:
        print(f"search: {args.size} sightings", flush=True)
        options = make_config(None).sightings.search.options()
        search_p95, search_24h_p95, exact_p95, exact_24h_p95, recall = search_bench(args.size, args.repeats, options)
        ok &= search_p95 <= 100 and search_24h_p95 <= 20
    print(f"sightings ingest_per_s={ingest_per_s:.0f} search_1m_p95_ms={search_p95:.2f} "
          f"search_1m_24h_p95_ms={search_24h_p95:.2f} catchup_lost={lost} catchup_dup={dup}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
