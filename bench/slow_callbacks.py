#!/usr/bin/env python3
"""Which callbacks hold the API's event loop over 50 ms, on the enrolment, identify and camera paths?

Runs a real ``facewatch serve`` (SQLite, embedded broker) in asyncio's debug
mode, where the loop logs every callback that runs longer than its
``slow_callback_duration`` (set to 50 ms by the app in debug mode), then drives
it as users would: concurrent REST enrolments of LFW faces, identify, detect
and verify calls, the same over STOMP, and a file camera running the shared
clip for a while. It then reads the server's log and reports each slow
callback (what it was, how long).

Last line: ``slow_callbacks count=<n> max_ms=<ms>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, Server, make_config  # noqa: E402

from broker.client import BrokerAddress, BusClient  # noqa: E402
from vision.pack import DEFAULT_PACK  # noqa: E402

SLOW = re.compile(r"Executing (?P<what>.*?) took (?P<s>[0-9.]+) seconds")


async def rest_load(server: Server, images: list[Path], concurrency: int) -> int:
    base, headers = f"http://127.0.0.1:{server.port}", {"x-api-key": server.key}
    done = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        assert (await http.post(f"{base}/api/v1/galleries", json={"name": "people"})).status == 201
        people = sorted({p.parent.name for p in images})
        for person in people:
            await http.post(f"{base}/api/v1/galleries/people/subjects", json={"id": person, "name": person})
        queue: asyncio.Queue[Path] = asyncio.Queue()
        for image in images:
            queue.put_nowait(image)

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                image = queue.get_nowait()
                form = aiohttp.FormData()
                form.add_field("file", image.read_bytes(), filename=image.name)
                async with http.post(f"{base}/api/v1/galleries/people/subjects/{image.parent.name}/faces",
                                     data=form) as reply:
                    await reply.read()
                for path in ("identify", "detect"):
                    form = aiohttp.FormData()
                    form.add_field("file", image.read_bytes(), filename=image.name)
                    form.add_field("galleries", "people")
                    async with http.post(f"{base}/api/v1/{path}", data=form) as reply:
                        await reply.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def stomp_and_camera(server: Server, data_dir: Path, camera_s: float) -> None:
    creds = json.loads((data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    try:
        key = {"x-api-key": server.key}
        image = base64.b64encode((DATA / "faces" / "probe" / "obama1.jpg").read_bytes()).decode()
        for _ in range(10):
            bus.request("/queue/facewatch.api", {"image": image, "galleries": "people"},
                        {"method": "POST", "path": "/api/v1/identify", **key}, timeout_s=30)
        clip = DATA / "video" / "short_hamilton_clip.mp4"
        made = bus.request("/queue/facewatch.api", {"id": "bench", "url": f"file://{clip}", "loop": True,
                                                     "galleries": ["people"]},
                           {"method": "POST", "path": "/api/v1/cameras", **key})
        assert made.status == 201, made.json()
        time.sleep(camera_s)  # the camera runs: what is measured is the loop meanwhile
        bus.request("/queue/facewatch.api", b"", {"method": "DELETE", "path": "/api/v1/cameras/bench", **key})
    finally:
        bus.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120, help="LFW images to enrol")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--camera-s", type=float, default=20.0, help="how long the camera runs")
    parser.add_argument("--log", help="keep the server's log here (with --log-level info: every request)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    images = sorted((DATA / "pairs" / "lfw-view1" / "images").glob("*/*.jpg"))[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(args.log) if args.log else Path(tmp) / "serve.log"
        models = Path(make_config(None).models_dir(DEFAULT_PACK.name))
        server = Server(Path(tmp), models, log, PYTHONASYNCIODEBUG="1", FACEWATCH_LOG_LEVEL=args.log_level,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(DATA / "video")]))
        try:
            started = time.monotonic()
            done = asyncio.run(rest_load(server, images, args.concurrency))
            print(f"REST: {done} enrolments + identify + detect in {time.monotonic() - started:.1f} s")
            stomp_and_camera(server, Path(tmp), args.camera_s)
        finally:
            server.stop()
        slow = [(float(m["s"]), m["what"]) for m in SLOW.finditer(log.read_text(errors="replace"))]
    slow.sort(reverse=True)
    for seconds, what in slow[:20]:
        print(f"  {seconds * 1000:7.1f} ms  {what[:150]}")
    print(f"slow_callbacks count={len(slow)} max_ms={slow[0][0] * 1000 if slow else 0:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
