"""Failover with real nodes: two `facewatch serve` processes on one PostgreSQL database, on RabbitMQ and
on the embedded broker of one of them (the other node is the one that dies there).

A node killed with SIGKILL (its workers with it) has its cameras taken over by the live node, which
says `node_down` first; the camera goes back to its preferred node when that node returns; a node
that only hangs (SIGSTOP) cannot publish under the lease it lost, and stops its worker when it wakes;
a killed node's bulk job is finished by the other node with no item applied twice.
"""

from __future__ import annotations

import io
import json
import os
import signal
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from broker.client import BrokerAddress, BusClient, Reply
from tests.waiting import eventually

from .cluster import API, Events, drop_rabbit_vhost, parent_pid, process_gone, rabbit_vhost
from .conftest import RABBIT_STOMP_PORT
from .repo_server import RepoServer
from .test_repo_api import PG, _drop_database, _postgres_database

pytestmark = [pytest.mark.models, pytest.mark.data]

LEASE_TTL_S = 3  # watcher.lease_ttl_s and jobs.lease_ttl_s of the nodes: failover within a few seconds
TAKEOVER_S = 90  # a generous bound for the facts awaited (two cores, shared with other runs)


@dataclass
class Pair:
    alpha: RepoServer  # on the embedded broker, the node that hosts it
    beta: RepoServer  # the node that dies
    key: str
    bus: BusClient
    broker: str

    def call(self, method: str, path: str, body: Any = b"") -> Reply:
        return self.bus.request(API, body, {"method": method, "path": path, "x-api-key": self.key}, timeout_s=30)


@pytest.fixture(scope="module", params=["rabbitmq", "embedded"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
         shared_data: Path) -> Iterator[Pair]:
    database = _postgres_database()
    assert database is not None
    url = f"{PG}/{database}"
    common = {"FACEWATCH_RUNTIME__ANALYSIS_PROCESSES": "1", "FACEWATCH_WATCHER__LEASE_TTL_S": str(LEASE_TTL_S),
              "FACEWATCH_JOBS__LEASE_TTL_S": str(LEASE_TTL_S),
              "FACEWATCH_WATCHER__FILE_ROOTS": json.dumps([str(shared_data / "video")])}
    vhost = None
    if request.param == "rabbitmq":
        request.getfixturevalue("rabbitmq")
        vhost = rabbit_vhost()
        common["FACEWATCH_BROKER__URL"] = f"stomp://guest:guest@127.0.0.1:{RABBIT_STOMP_PORT}/{vhost or ''}"
    root = tmp_path_factory.mktemp(f"failover-{request.param}")
    alpha = RepoServer(root / "alpha", models_dir, url, FACEWATCH_WATCHER__NODE="alpha", **common)
    tenant = alpha.create_tenant("acme")
    alpha.start()
    if request.param == "embedded":
        creds = json.loads((alpha.data_dir / "broker-credentials.json").read_text())
        address = BrokerAddress("127.0.0.1", alpha.stomp_port, creds["login"], creds["passcode"])
        common["FACEWATCH_BROKER__URL"] = f"stomp://{creds['login']}:{creds['passcode']}@127.0.0.1:{alpha.stomp_port}/"
    else:
        address = BrokerAddress("127.0.0.1", RABBIT_STOMP_PORT, "guest", "guest", vhost or "/")
    beta = RepoServer(root / "beta", models_dir, url, FACEWATCH_WATCHER__NODE="beta", **common)
    bus = BusClient(address, client_name="test-failover")
    try:
        beta.start()
        bus.connect()
        made = alpha.http(api_key=tenant["api_key"]).call("POST", "/api/v1/galleries", {"name": "nobody"})
        assert made.status == 201, made.body
        yield Pair(alpha, beta, tenant["api_key"], bus, request.param)
    finally:
        bus.close()
        beta.stop()
        alpha.stop()
        _drop_database(database)
        drop_rabbit_vhost(vhost)


def _register(pair: Pair, camera: str, clip: Path, node: str) -> None:
    reply = pair.call("POST", "/api/v1/cameras", {"id": camera, "url": f"file://{clip}", "loop": True,
                                                  "galleries": ["nobody"], "max_fps": 2, "node": node})
    assert reply.status == 201 and reply.json()["node"] == node, reply.json()


def _status(camera: str, state: str, node: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (e.get("camera") == camera and e.get("type") == "camera.status" and e.get("state") == state
                      and e.get("node") == node)


def _epochs_never_go_back(events: list[dict[str, Any]]) -> None:
    """Once an event of a newer lease has arrived, none of an older one comes."""
    highest = 0
    for event in events:
        assert event["lease"] >= highest, (event, highest)
        highest = event["lease"]


def _clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


def test_a_killed_nodes_camera_runs_on_the_live_node_and_returns_to_its_preferred_node(pair: Pair,
                                                                                      shared_data: Path) -> None:
    camera = f"door-{pair.broker}"
    events = Events(pair.bus, f"/topic/watcher.{camera}")
    try:
        _register(pair, camera, _clip(shared_data), "beta")
        _, first = events.wait_for(_status(camera, "running", "beta"), TAKEOVER_S)
        assert pair.beta.proc is not None and parent_pid(first["pid"]) == pair.beta.proc.pid  # preference honoured

        pair.beta.kill()  # the node and its workers, at once
        at, down = events.wait_for(_status(camera, "node_down", "beta"), TAKEOVER_S)
        assert down["taken_over_by"] == "alpha" and down["lease"] > first["lease"]
        _, running = events.wait_for(_status(camera, "running", "alpha"), TAKEOVER_S, after=at)
        assert pair.alpha.proc is not None and parent_pid(running["pid"]) == pair.alpha.proc.pid
        assert running["lease"] == down["lease"]
        # The answer comes from the supervisor's copy of the worker's reports (every 0.2 s): it may lag the bus.
        status = eventually(lambda: (s := pair.call("GET", f"/api/v1/cameras/{camera}/status").json())["state"]
                            == "running" and s, timeout_s=10, interval_s=0.1, what="alpha to report the camera")
        assert (status["node"], status["preferred_node"], status["lease"]) == ("alpha", "beta", down["lease"]), status
        assert pair.call("GET", f"/api/v1/cameras/{camera}").json()["node"] == "beta"  # still the preference

        pair.beta.start()  # back: the camera moves home, announced as a move, not as a node that died
        at, back = events.wait_for(_status(camera, "running", "beta"), TAKEOVER_S, after=at)
        assert back["lease"] > running["lease"] and parent_pid(back["pid"]) == pair.beta.proc.pid
        moved = [e for e in events.snapshot() if e.get("state") == "stopped" and e.get("node") == "alpha"]
        assert [e["reason"] for e in moved] == ["moved: its preferred node beta is back"], moved  # one, with why

        assert pair.call("POST", f"/api/v1/cameras/{camera}/stop").status == 200  # the operator's stop
        at, stopped = events.wait_for(_status(camera, "stopped", "beta"), TAKEOVER_S, after=at)
        assert stopped.get("reason") in (None, "")  # not a node's death, nor a move: enabled is false
        for _ in range(4):  # whichever node answers
            status = pair.call("GET", f"/api/v1/cameras/{camera}/status").json()
            assert (status["state"], status["enabled"]) == ("stopped", False), status
    finally:
        pair.call("DELETE", f"/api/v1/cameras/{camera}")
        events.close()
    seen = events.snapshot()
    assert not [e for e in seen if e.get("state") == "node_down" and e["lease"] != down["lease"]]  # only the death
    _epochs_never_go_back(seen)


@pytest.mark.parametrize("pair", ["rabbitmq"], indirect=True)  # one broker is enough: the fencing is the database's
def test_a_hung_node_cannot_publish_under_the_lease_it_lost(pair: Pair, shared_data: Path) -> None:
    camera = "stale"
    events = Events(pair.bus, f"/topic/watcher.{camera}")
    beta = pair.beta
    assert beta.proc is not None
    try:
        _register(pair, camera, _clip(shared_data), "beta")
        _, first = events.wait_for(_status(camera, "running", "beta"), TAKEOVER_S)
        os.kill(beta.proc.pid, signal.SIGSTOP)  # the server hangs; its worker runs on, and must fence itself
        try:
            at, down = events.wait_for(_status(camera, "node_down", "beta"), TAKEOVER_S)
            newer = down["lease"]
            # The new owner's worker runs and sees faces: time enough for the old one to have published.
            events.wait_for(lambda e: e.get("type") in ("face.unknown", "track.ended") and e["lease"] == newer,
                            TAKEOVER_S, after=at)
            eventually(lambda: process_gone(first["pid"]), timeout_s=TAKEOVER_S,
                       what="the hung node's worker to stop, its lease being another's")
        finally:
            os.kill(beta.proc.pid, signal.SIGCONT)
        # beta wakes: its renewal is refused, then it is alive and preferred again, and gets the camera back.
        events.wait_for(lambda e: _status(camera, "running", "beta")(e) and e["lease"] > newer, TAKEOVER_S, after=at)
    finally:
        pair.call("DELETE", f"/api/v1/cameras/{camera}")
        events.close()
    seen = events.snapshot()
    first_newer = next(i for i, e in enumerate(seen) if e["lease"] == newer)
    assert not [e for e in seen[first_newer:] if e["lease"] < newer]  # nothing of the lost lease after the new one
    _epochs_never_go_back(seen)
    assert f"lease {first['lease']} of node beta is lost" in beta.log.read_text()


def _zip_of_small_copies(shared_data: Path, copies: int) -> tuple[bytes, int]:
    """Every enrolment photo, downscaled, ``copies`` times, each copy its own subject: many quick items."""
    buf = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buf, "w") as archive:
        for photo in sorted((shared_data / "faces" / "enroll").glob("*/*")):
            image = cv2.imdecode(np.frombuffer(photo.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            assert image is not None, photo
            scale = 400 / max(image.shape[:2])
            small = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
            data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for copy in range(copies):
                archive.writestr(f"{photo.parent.name}-{copy}/{photo.stem}.jpg", data)
                count += 1
    return buf.getvalue(), count


@pytest.mark.parametrize("pair", ["rabbitmq"], indirect=True)  # one broker is enough: jobs are the database's
def test_a_killed_nodes_job_is_finished_by_the_live_node_with_no_item_applied_twice(pair: Pair,
                                                                                    shared_data: Path) -> None:
    if pair.beta.proc is None:
        pair.beta.start()
    data, items = _zip_of_small_copies(shared_data, 12)
    on_beta = pair.beta.http(api_key=pair.key)
    on_alpha = pair.alpha.http(api_key=pair.key)
    assert on_beta.call("POST", "/api/v1/galleries", {"name": "bulk"}).status == 201
    accepted = on_beta.call("POST", "/api/v1/galleries/bulk/enrol", files={"file": ("people.zip", data)})
    assert accepted.status == 202, accepted.body
    job = accepted.body["id"]

    def under_way() -> bool:
        body = on_alpha.call("GET", f"/api/v1/jobs/{job}").body
        assert body["status"] != "done", "the job ended before its node could be killed"
        return bool(body["done"] >= 2)

    eventually(under_way, timeout_s=TAKEOVER_S, interval_s=0.05, what="beta to be under way with the job")
    pair.beta.kill()
    finished = eventually(lambda: (b := on_alpha.call("GET", f"/api/v1/jobs/{job}").body)["status"] == "done" and b,
                          timeout_s=TAKEOVER_S, interval_s=0.2, what="alpha to finish beta's job")
    assert finished["done"] == items
    assert "resuming it here" in pair.alpha.log.read_text()
    expected: dict[str, int] = {}  # faces per subject: one per item (photo), less the items refused
    for photo in (shared_data / "faces" / "enroll").glob("*/*"):
        for copy in range(12):
            expected[f"{photo.parent.name}-{copy}"] = expected.get(f"{photo.parent.name}-{copy}", 0) + 1
    for refused in finished["result"]["failed"]:
        expected[refused["item"].split("/")[0]] -= 1
    subjects = on_alpha.call("GET", "/api/v1/galleries/bulk/subjects?limit=1000").body["subjects"]
    assert {s["id"]: s["faces"] for s in subjects if s["faces"]} == {s: n for s, n in expected.items() if n}
    assert finished["result"]["added"] == sum(expected.values())
    pair.beta.start()  # for the next test, as the module found it
