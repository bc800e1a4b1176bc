"""The sightings writer under a crash: `facewatch serve` on RabbitMQ is killed (SIGKILL) while it writes
a stream of face events; started again, it stores every one of them once, numbered without a gap."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from broker.client import BrokerAddress, BusClient
from tests.event_factory import unknown
from tests.waiting import eventually
from watcher.cameras import SIGHTINGS_QUEUE

from .repo_server import RepoServer

COUNT = 3000


def face_unknown(camera: str, track: int) -> dict[str, Any]:
    vector = np.random.default_rng(track).standard_normal(512).astype(np.float32)
    vector /= np.linalg.norm(vector)
    return unknown(camera, track, vector, b"\xff\xd8" * 2000).to_json()


def test_a_crash_loses_no_acknowledged_sighting_and_stores_none_twice(tmp_path: Path, models_dir: Path,
                                                                       rabbitmq: BrokerAddress) -> None:
    camera = f"crash-{uuid.uuid4().hex[:8]}"
    server = RepoServer(tmp_path / "crash", models_dir, None, FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0",
                        FACEWATCH_BROKER__URL=f"stomp://guest:guest@127.0.0.1:{rabbitmq.port}/",
                        FACEWATCH_SIGHTINGS__BATCH_SIZE="50")
    tenant = server.create_tenant("acme")
    server.start()
    bus = BusClient(rabbitmq, client_name="crash-test")
    bus.connect()
    http = server.http(api_key=tenant["api_key"])
    try:
        registered = bus.request("/queue/facewatch.api", {"id": camera, "url": "rtsp://camera.invalid/1",
                                                          "enabled": False},
                                 {"method": "POST", "path": "/api/v1/cameras", "x-api-key": tenant["api_key"]},
                                 timeout_s=30)
        assert registered.status == 201, registered.json()
        sent = [face_unknown(camera, track) for track in range(COUNT)]
        for event in sent:  # as the workers queue them
            bus.publish(SIGHTINGS_QUEUE, event, {"persistent": "true"})

        def newest() -> int:
            found = http.call("GET", "/api/v1/sightings?limit=1").body["sightings"]
            return int(found[0]["seq"]) if found else 0

        before_crash = eventually(lambda: newest() >= COUNT // 10 and newest(), timeout_s=60,
                                  what="the writer under way")
        assert server.proc is not None
        server.proc.kill()  # mid-stream: a batch committed but not acknowledged is redelivered
        server.proc.wait(30)
        assert before_crash < COUNT, "the crash came too late to prove anything"
        server.start()
        newest_after = eventually(lambda: newest() >= COUNT and newest(), timeout_s=120,
                                  what="every queued event stored after the restart")
        stored: list[dict[str, Any]] = []
        cursor = 0
        while True:
            page = http.call("GET", f"/api/v1/sightings?since={cursor}&limit=1000").body
            stored += page["sightings"]
            cursor = page["cursor"]
            if not page["more"]:
                break
        assert newest_after == COUNT and len(stored) == COUNT
        assert [s["seq"] for s in stored] == list(range(1, COUNT + 1))  # dense: nothing lost, nothing doubled
        assert sorted(s["event_id"] for s in stored) == sorted(e["id"] for e in sent)
    finally:
        bus.close()
        server.stop()
