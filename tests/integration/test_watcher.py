"""The watcher end to end: a real `facewatch serve`, GStreamer's RTSP server
playing the shared clip, cameras registered over STOMP, events received by a
stomp.py subscriber; on the embedded broker and on RabbitMQ."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import msgpack
import numpy as np
import pytest

from broker.client import BrokerAddress, BusClient, Reply
from events import from_json as event_from_json
from tests.conftest import ROOT
from tests.waiting import eventually

from .cluster import drop_rabbit_vhost, rabbit_vhost
from .conftest import RABBIT_STOMP_PORT, RawStomp, require_rtsp
from .repo_server import RepoServer, enrol, free_port
from .rtsp import RtspServer

pytestmark = pytest.mark.data

API = "/queue/facewatch.api"
ENROLLED = ("lin_manuel_miranda", "alex_lacamoire")


class Events:
    """Every event published on one topic, as received by a subscriber."""

    def __init__(self, bus: BusClient, destination: str, decode: Callable[[bytes], Any] = json.loads) -> None:
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._decode = decode
        self.sub_id = bus.subscribe(destination, self._on_message, receipt=True)  # in place when this returns
        self.bus = bus

    def _on_message(self, message: Any) -> None:
        with self._cond:
            event = self._decode(message.body)
            event["_received"] = time.time()
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.items[after:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.get("type"), e.get("state"), e.get("reason")) for e in self.items[after:]][-15:]
                    raise AssertionError(f"no matching event in {timeout_s}s; last seen: {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self.bus.unsubscribe(self.sub_id)


def _eventually(condition: Callable[[], bool], timeout_s: float = 60, what: str = "the condition") -> None:
    eventually(condition, timeout_s=timeout_s, interval_s=0.2, what=what)


def _state(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("type") == "camera.status" and e.get("state") == name


def _recognized(subject: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("type") == "face.recognized" and e["subject"]["id"] == subject


class Watch:
    """A running service with Lin-Manuel Miranda and Alex Lacamoire enrolled."""

    def __init__(self, server: RepoServer, bus_address: BrokerAddress, tenant: dict[str, str],
                 other: dict[str, str], shared_data: Path) -> None:
        self.server = server
        self.tenant = tenant
        self.other = other
        self.data = shared_data
        self.bus = BusClient(bus_address, client_name="test-watcher")
        self.bus.connect()

    def call(self, method: str, path: str, body: Any = b"", *, key: str | None = None,
             timeout_s: float = 30.0) -> Reply:
        headers = {"method": method, "path": path}
        api_key = self.tenant["api_key"] if key is None else key
        if api_key:
            headers["x-api-key"] = api_key
        return self.bus.request(API, body, headers, timeout_s=timeout_s)

    def events(self, camera: str, decode: Callable[[bytes], Any] = json.loads, prefix: str = "watcher") -> Events:
        return Events(self.bus, f"/topic/{prefix}.{camera}", decode)  # subscribed before the camera starts

    def register(self, camera_id: str, url: str, **settings: Any) -> dict[str, Any]:
        reply = self.call("POST", "/api/v1/cameras", {"id": camera_id, "url": url, "galleries": ["hamilton"],
                                                     **settings})
        assert reply.status == 201, reply.json()
        created: dict[str, Any] = reply.json()
        return created

    def status(self, camera_id: str) -> dict[str, Any]:
        reply = self.call("GET", f"/api/v1/cameras/{camera_id}/status")
        assert reply.status == 200, reply.json()
        status: dict[str, Any] = reply.json()
        return status

    def remove(self, camera_id: str) -> None:
        assert self.call("DELETE", f"/api/v1/cameras/{camera_id}").status == 204

    @contextmanager
    def camera(self, camera_id: str, url: str, **settings: Any) -> Iterator[Events]:
        """A registered camera and its events (subscribed first), removed afterwards."""
        events = self.events(camera_id)
        self.register(camera_id, url, **settings)
        try:
            yield events
        finally:
            self.remove(camera_id)
            events.close()

    def close(self) -> None:
        self.bus.close()


@pytest.fixture(scope="module")
def rtsp(shared_data: Path) -> Iterator[RtspServer]:
    require_rtsp()
    server = RtspServer(free_port(), str(shared_data / "video" / "short_hamilton_clip.mp4")).start()
    yield server
    server.kill()


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def watch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
          shared_data: Path) -> Iterator[Watch]:
    env = {"FACEWATCH_WATCHER__FILE_ROOTS": json.dumps([str(shared_data / "video")]),
           "FACEWATCH_WATCHER__MAX_INITIAL_ATTEMPTS": "2", "FACEWATCH_WATCHER__OPEN_TIMEOUT_S": "3",
           "FACEWATCH_WATCHER__READ_TIMEOUT_S": "3", "FACEWATCH_WATCHER__RESTART_INITIAL_S": "0.5",
           # The test's RTSP server is on loopback, which cameras may not reach by default.
           "FACEWATCH_WATCHER__BLOCKED_NETWORKS": json.dumps(["169.254.0.0/16"])}
    vhost = None
    if request.param == "rabbitmq":
        rabbit = request.getfixturevalue("rabbitmq")
        vhost = rabbit_vhost()  # this server's API queue of its own
        address = BrokerAddress(rabbit.host, rabbit.port, rabbit.login, rabbit.passcode, vhost or "/")
        env["FACEWATCH_BROKER__URL"] = f"stomp://guest:guest@127.0.0.1:{RABBIT_STOMP_PORT}/{vhost or ''}"
    server = RepoServer(tmp_path_factory.mktemp(f"watch-{request.param}"), models_dir, None, **env)
    tenant, other = server.create_tenant("theatre"), server.create_tenant("elsewhere")
    server.start()
    if request.param == "embedded":
        creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
        address = BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"])
    enrol(server.http(api_key=tenant["api_key"]), shared_data, "hamilton", ENROLLED)
    watch = Watch(server, address, tenant, other, shared_data)
    watch.param = request.param  # type: ignore[attr-defined]
    yield watch
    watch.close()
    server.stop()
    drop_rabbit_vhost(vhost)


def test_rtsp_camera_over_stomp_announces_lin_manuel_miranda(watch: Watch, rtsp: RtspServer) -> None:
    camera = f"stage-{watch.param}"  # type: ignore[attr-defined]
    events = watch.events(camera)
    packed = watch.events(camera, decode=lambda b: msgpack.unpackb(b), prefix="watcher-msgpack")
    created = watch.register(camera, rtsp.url, cooldown_s=3600, msgpack=True, attributes=["age"])
    assert created["topic"] == f"/topic/watcher.{camera}" and created["enabled"] is True
    try:
        events.wait_for(_state("running"), 60)
        hit = events.wait_for(_recognized("lin_manuel_miranda"), 60)
        assert hit["camera"] == camera and hit["subject"]["gallery"] == "hamilton"
        assert hit["similarity"] >= hit["threshold"]
        crop = cv2.imdecode(np.frombuffer(base64.b64decode(hit["crop"]), np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and min(crop.shape[:2]) >= 32
        assert 10 < hit["attributes"]["age"] < 90
        box, frame = hit["box"], hit["frame"]
        assert (frame["width"], frame["height"]) == (640, 360)
        assert 0 <= box["x_min"] < box["x_max"] <= frame["width"]
        assert 0 <= box["y_min"] < box["y_max"] <= frame["height"]
        assert hit["frame"]["wall_time"] <= hit["analysed_frame_time"] <= hit["_received"]
        same = packed.wait_for(_recognized("lin_manuel_miranda"), 10)
        assert same["track"] == hit["track"] and same["crop"] == hit["crop"]
        # One vocabulary: the msgpack copy reads as the same typed event as the JSON one (the received
        # time the test adds is no field of it).
        assert event_from_json(same) == event_from_json(hit)
        assert hit["seq"] >= 1 and hit["run"]
        # Stats come once a second: the recognition may be older than the first report of them.
        _eventually(lambda: watch.status(camera)["stats"].get("analysed", 0) > 0, 10)
        status = watch.status(camera)
        assert status["state"] == "running" and status["worker"]["alive"]
        listed = watch.call("GET", "/api/v1/cameras").json()["cameras"]
        assert [c["id"] for c in listed] == [camera]
    finally:
        watch.remove(camera)
        events.close()
        packed.close()
    recognized = [e for e in events.items if e["type"] == "face.recognized"]
    # Nobody else, and nobody under the threshold: Alex is at the piano, too small to be matched.
    assert {e["subject"]["id"] for e in recognized} == {"lin_manuel_miranda"}
    assert all(e["similarity"] >= e["threshold"] for e in recognized)
    assert len({e["track"] for e in recognized}) == len(recognized)  # one event per track at most


def test_camera_requests_are_checked_and_isolated(watch: Watch, shared_data: Path) -> None:
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    cases = [
        ({"url": "ftp://example.com/x"}, 400, "url"),
        ({"url": "file:///etc/hostname"}, 400, "url"),
        ({"url": str(clip), "max_fps": 0}, 400, "max_fps"),
        ({"url": str(clip), "threshold": "loose"}, 400, "threshold"),
        ({"url": str(clip), "colour": "red"}, 400, "colour"),
        ({"id": "Bad.Id", "url": str(clip)}, 400, "id"),
    ]
    for body, status, param in cases:
        reply = watch.call("POST", "/api/v1/cameras", body)
        assert (reply.status, reply.json()["code"], reply.json().get("param")) == (status, "BAD_PARAM", param), body
    assert watch.call("POST", "/api/v1/cameras", b"{nope").json()["code"] == "MALFORMED_JSON"
    watch.register("private", str(clip), enabled=False)
    try:
        assert watch.call("POST", "/api/v1/cameras", {"id": "private", "url": str(clip)}).status == 409
        assert watch.call("GET", "/api/v1/cameras/private", key="").status == 401
        assert watch.call("GET", "/api/v1/cameras/private", key="fwk_nope_nope").status == 401
        other = watch.call("GET", "/api/v1/cameras/private", key=watch.other["api_key"])
        assert other.status == 404 and "private" not in json.dumps(watch.call(
            "GET", "/api/v1/cameras", key=watch.other["api_key"]).json())
        assert watch.call("DELETE", "/api/v1/cameras/private", key=watch.other["api_key"]).status == 404
        assert watch.status("private")["state"] == "stopped"
        # Watcher operations are STOMP only.
        http = watch.server.http(api_key=watch.tenant["api_key"])
        assert http.call("GET", "/api/v1/cameras").status == 404
        changed = watch.call("PATCH", "/api/v1/cameras/private", {"name": "Back door", "max_fps": 2})
        assert changed.status == 200 and changed.json()["name"] == "Back door" and changed.json()["max_fps"] == 2
    finally:
        watch.remove("private")
    assert watch.call("GET", "/api/v1/cameras/private").status == 404


# The fault tests run once, on the embedded broker: the broker plays no part in them.
embedded_only = pytest.mark.parametrize("watch", ["embedded"], indirect=True)


@embedded_only
def test_rtsp_server_restart_reconnects_and_recognitions_resume(watch: Watch, rtsp: RtspServer) -> None:
    with watch.camera("flaky", rtsp.url, cooldown_s=0) as events:
        events.wait_for(_recognized("lin_manuel_miranda"), 60)
        mark = len(events.items)
        rtsp.kill()
        # A second attempt failed too: the worker tried against the stopped server before it comes back.
        events.wait_for(lambda e: _state("reconnecting")(e) and e.get("attempt", 0) >= 2, 30, after=mark)
        rtsp.start()
        events.wait_for(_state("running"), 60, after=mark)
        events.wait_for(_recognized("lin_manuel_miranda"), 60, after=mark)


@embedded_only
def test_bad_source_fails_with_a_reason(watch: Watch) -> None:
    with watch.camera("nowhere", f"rtsp://127.0.0.1:{free_port()}/missing") as events:
        failed = events.wait_for(_state("failed"), 60)
        assert failed["reason"] and failed["attempt"] == 2
        _eventually(lambda: watch.status("nowhere")["state"] == "failed")


@embedded_only
def test_killed_worker_is_restarted(watch: Watch, shared_data: Path) -> None:
    with watch.camera("looped", f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}", loop=True) as events:
        events.wait_for(_state("running"), 60)
        first = watch.status("looped")["worker"]["pid"]
        mark = len(events.items)
        os.kill(first, signal.SIGKILL)
        crashed = events.wait_for(_state("restarting"), 30, after=mark)
        assert "SIGKILL" in crashed["reason"]
        events.wait_for(_state("running"), 60, after=mark)
        status = watch.status("looped")
        assert status["worker"]["pid"] != first and status["worker"]["restarts"] == 1


@embedded_only
def test_person_enrolled_while_running_is_recognised_without_restart(watch: Watch, shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    with watch.camera("lobby", clip, loop=True, galleries=["latecomers"]) as events:
        events.wait_for(_state("running"), 60)
        pid = watch.status("lobby")["worker"]["pid"]
        events.wait_for(lambda e: e["type"] == "face.unknown", 60)  # Lin, unknown for now
        enrol(watch.server.http(api_key=watch.tenant["api_key"]), shared_data, "latecomers", ("lin_manuel_miranda",))
        hit = events.wait_for(_recognized("lin_manuel_miranda"), 60)
        assert hit["subject"]["gallery"] == "latecomers"
        assert watch.status("lobby")["worker"]["pid"] == pid  # the same worker


def test_a_request_cannot_make_the_api_reply_onto_a_topic(watch: Watch) -> None:
    """reply-to naming a camera's topic (or any destination but the requester's own private reply queue)
    must not make the API, with its own rights, write there: the request is dropped."""
    victim = watch.events("victim")
    try:
        watch.bus.publish(API, b"", {"method": "GET", "path": "/api/v1/galleries", "x-api-key": watch.tenant["api_key"],
                                     "reply-to": "/topic/watcher.victim", "correlation-id": "forged"})
        assert watch.call("GET", "/api/v1/galleries").status == 200  # a later request is answered...
        watch.bus.publish("/topic/watcher.victim", {"type": "fence"})
        fence = victim.wait_for(lambda e: e.get("type") == "fence", 30)
        assert victim.items == [fence]  # ...and nothing but our own fence reached the topic
    finally:
        victim.close()


@embedded_only
def test_a_corrected_stranger_is_not_announced_again(watch: Watch, shared_data: Path) -> None:
    """Lin-Manuel Miranda, not enrolled, is named as the only subject (Obama) at a fixed cosine that accepts
    anyone; one "this is not Obama" from the event's own crop, and the looping camera names him no more."""
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    http = watch.server.http(api_key=watch.tenant["api_key"])
    enrol(http, shared_data, "presidents", ("obama",))
    with watch.camera("corrected", clip, loop=True, galleries=["presidents"], threshold=-1.0, cooldown_s=0) as events:
        wrong = events.wait_for(_recognized("obama"), 90)
        stored = http.call("POST", "/api/v1/galleries/presidents/subjects/obama/negatives",
                           {"image": wrong["crop"], "source": f"event corrected/{wrong['track']}"})
        assert stored.status == 201, stored.body
        # Every track decided after the correction is refuted, none named; wait for two such tracks.
        mark = len(events.items)
        refuted = [events.wait_for(lambda e: e["type"] == "track.ended" and e["decision"]["reason"] == "refuted",
                                   90, after=mark)]
        refuted.append(events.wait_for(lambda e: e["type"] == "track.ended" and e["decision"]["reason"] == "refuted"
                                       and e["track"] != refuted[0]["track"], 90, after=mark))
        after = events.items[mark:]
        first_refuted = min(after.index(e) for e in refuted)
        # Others in the clip may still be named Obama at this threshold; the corrected man may not.
        for named in (e for e in after[first_refuted:] if e["type"] == "face.recognized"):
            same = http.call("POST", "/api/v1/verify", {"image1": named["crop"], "image2": wrong["crop"],
                                                         "threshold": "medium"})
            assert same.status == 422 or (same.status == 200 and same.body["verified"] is False), same.body
    assert http.call("DELETE", "/api/v1/galleries/presidents").status == 204


@embedded_only
def test_cameras_follow_a_renamed_gallery(watch: Watch, shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    enrol(watch.server.http(api_key=watch.tenant["api_key"]), shared_data, "stage", ("lin_manuel_miranda",))
    with watch.camera("stagecam", clip, loop=True, galleries=["stage"]) as events:
        events.wait_for(lambda e: _recognized("lin_manuel_miranda")(e) and e["subject"]["gallery"] == "stage", 60)
        mark = len(events.items)
        http = watch.server.http(api_key=watch.tenant["api_key"])
        assert http.call("PATCH", "/api/v1/galleries/stage", {"name": "curtain"}).status == 200
        _eventually(lambda: watch.call("GET", "/api/v1/cameras/stagecam").json()["galleries"] == ["curtain"], 30)
        events.wait_for(lambda e: _recognized("lin_manuel_miranda")(e) and e["subject"]["gallery"] == "curtain", 90,
                        after=mark)
        assert http.call("DELETE", "/api/v1/galleries/curtain").status == 204


@embedded_only
def test_cameras_come_back_after_a_server_restart(watch: Watch, shared_data: Path) -> None:
    watch.register("survivor", f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}", loop=True)
    watch.register("paused", f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}", enabled=False)
    try:
        watch.server.stop()
        watch.server.start()
        assert watch.bus.wait_connected(30)
        events = watch.events("survivor")
        _eventually(lambda: watch.status("survivor")["state"] == "running")
        assert watch.status("paused")["state"] == "stopped"
        events.close()
    finally:
        watch.remove("survivor")
        watch.remove("paused")


@embedded_only
def test_tenants_connect_with_their_api_key_and_read_only_their_own_cameras(watch: Watch, shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    watch.register("ours", clip, loop=True)
    theirs = watch.call("POST", "/api/v1/cameras", {"id": "theirs", "url": clip, "enabled": False},
                        key=watch.other["api_key"])
    assert theirs.status == 201
    port = watch.server.stomp_port
    try:
        # An application of the tenant: its API key as the passcode; API requests work too.
        app = BusClient(BrokerAddress("127.0.0.1", port, "my-app", watch.tenant["api_key"]), client_name="app")
        app.connect()
        try:
            events = Events(app, "/topic/watcher.ours")
            events.wait_for(lambda e: e["type"] in ("camera.status", "face.recognized", "face.unknown"), 60)
            listed = app.request(API, b"", {"method": "GET", "path": "/api/v1/cameras",
                                            "x-api-key": watch.tenant["api_key"]})
            assert [c["id"] for c in listed.json()["cameras"]] == ["ours"]
        finally:
            app.close()
        refused = [("/topic/watcher.theirs", watch.tenant), ("/topic/watcher.*", watch.tenant),
                   ("/topic/watcher.#", watch.tenant), ("/topic/repo.events", watch.tenant),
                   ("/topic/watcher.ours", watch.other), ("/queue/facewatch.api", watch.tenant)]
        for destination, tenant in refused:
            peer = RawStomp(port)
            assert peer.connect("app", tenant["api_key"]).command == "CONNECTED"
            peer.send_frame("SUBSCRIBE", {"id": "1", "destination": destination, "receipt": "r"})
            answer = peer.recv()
            assert answer.command == "ERROR" and answer.headers["message"] == "access refused", destination
            peer.close()
        peer = RawStomp(port)
        assert peer.connect("app", watch.tenant["api_key"]).command == "CONNECTED"
        peer.send_frame("SEND", {"destination": "/topic/watcher.ours", "receipt": "r"}, b"{}")
        assert peer.recv().command == "ERROR"  # tenants cannot publish fake events
        peer.close()
        peer = RawStomp(port)
        assert peer.connect("app", watch.tenant["api_key"]).command == "CONNECTED"
        peer.send_frame("SEND", {"destination": "/queue/facewatch.api.parked", "receipt": "r"}, b"x")
        answer = peer.recv()  # the API queue itself, not every name that starts like it (no queues to fill)
        assert answer.command == "ERROR" and answer.headers["message"] == "access refused"
        peer.close()
        for login, passcode in (("app", "fwk_0123456789abcdef_wrong"), ("app", "guest"), ("facewatch", "")):
            assert RawStomp(port).connect(login, passcode).command == "ERROR"
    finally:
        watch.remove("ours")
        assert watch.call("DELETE", "/api/v1/cameras/theirs", key=watch.other["api_key"]).status == 204


@embedded_only
def test_a_tenant_subscribes_once_to_all_its_cameras_present_and_future(watch: Watch, shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    tenant_id = watch.call("GET", "/api/v1/me").json()["tenant"]
    app = BusClient(BrokerAddress("127.0.0.1", watch.server.stomp_port, "app", watch.tenant["api_key"]),
                    client_name="app")
    app.connect()
    try:
        every = Events(app, f"/topic/tenant.{tenant_id}.watcher.*")  # before any of these cameras exists
        one = Events(app, f"/topic/tenant.{tenant_id}.watcher.porch")
        created = watch.register("porch", clip, loop=True)
        assert created["tenant_topic"] == f"/topic/tenant.{tenant_id}.watcher.porch"
        watch.register("garage", clip, loop=True)
        for camera in ("porch", "garage"):
            every.wait_for(lambda e: e["type"] == "camera.status" and e["camera"] == camera, 60)
        one.wait_for(lambda e: e["type"] == "camera.status" and e["camera"] == "porch", 60)
        theirs = watch.call("POST", "/api/v1/cameras", {"id": "shed", "url": clip, "loop": True},
                            key=watch.other["api_key"])
        assert theirs.status == 201
        fence = watch.register("fence", clip, loop=True)  # registered after theirs: its events come later
        every.wait_for(lambda e: e["camera"] == fence["id"], 60)
        assert "shed" not in {e["camera"] for e in every.items}  # another tenant's camera never reaches it
    finally:
        app.close()
        for camera in ("porch", "garage", "fence"):
            watch.remove(camera)
        assert watch.call("DELETE", "/api/v1/cameras/shed", key=watch.other["api_key"]).status == 204


@embedded_only
def test_a_subscribe_key_reads_its_cameras_only_and_revoking_a_key_closes_its_connections(watch: Watch,
                                                                                         shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    watch.register("lobby", clip, enabled=False)
    watch.register("office", clip, enabled=False)
    made = watch.call("POST", "/api/v1/keys", {"name": "wall", "scope": {"kind": "subscribe", "cameras": ["lobby"]}})
    assert made.status == 201, made.json()
    wall, port = made.json(), watch.server.stomp_port
    try:
        tenant_id = watch.call("GET", "/api/v1/me").json()["tenant"]
        for destination in ("/topic/watcher.office", f"/topic/tenant.{tenant_id}.#", "/topic/watcher.*"):
            peer = RawStomp(port)
            assert peer.connect("wall", wall["key"]).command == "CONNECTED"
            peer.send_frame("SUBSCRIBE", {"id": "1", "destination": destination, "receipt": "r"})
            assert peer.recv().headers["message"] == "access refused", destination
            peer.close()
        peer = RawStomp(port)
        assert peer.connect("wall", wall["key"]).command == "CONNECTED"
        peer.send_frame("SEND", {"destination": API, "receipt": "r"}, b"{}")
        assert peer.recv().headers["message"] == "access refused"  # no API calls: the broker only
        peer.close()
        # Revoked through the API: its open connection is closed at once.
        viewer = RawStomp(port, timeout_s=20)
        assert viewer.connect("wall", wall["key"]).command == "CONNECTED"
        viewer.send_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/watcher.lobby", "receipt": "r"})
        assert viewer.recv().command == "RECEIPT"
        assert watch.call("DELETE", f"/api/v1/keys/{wall['id']}").status == 204
        closed = viewer.recv(timeout_s=20)
        assert closed.command == "ERROR" and closed.headers["message"] == "access revoked"
        assert RawStomp(port).connect("wall", wall["key"]).command == "ERROR"
        # Revoked by the CLI (another process): closed at the next check (auth.revocation_check_s).
        made = watch.call("POST", "/api/v1/keys", {"name": "tablet", "scope": "read"})
        tablet = made.json()
        viewer = RawStomp(port, timeout_s=20)
        assert viewer.connect("tablet", tablet["key"]).command == "CONNECTED"
        revoked = watch.server.cli("keys", "revoke", "theatre", tablet["id"])
        assert revoked.returncode == 0, revoked.stderr
        closed = viewer.recv(timeout_s=20)
        assert closed.command == "ERROR" and closed.headers["message"] == "access revoked"
    finally:
        watch.remove("lobby")
        watch.remove("office")


def test_cameras_declared_in_config_start_with_serve(tmp_path: Path, models_dir: Path, shared_data: Path) -> None:
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    declared = json.dumps([{"id": "declared", "tenant": "theatre", "url": f"file://{clip}", "loop": True,
                            "galleries": ["hamilton"]}])
    server = RepoServer(tmp_path / "declared", models_dir, None, FACEWATCH_WATCHER__CAMERAS=declared,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(clip.parent)]))
    unknown_tenant = server.cli("config", "check")
    assert unknown_tenant.returncode == 0  # the file is valid; the tenant is checked when serve starts
    failed = subprocess_serve(server)
    assert failed.returncode == 2 and "names tenant 'theatre', which does not exist" in failed.stderr
    tenant = server.create_tenant("theatre")
    server.start()
    try:
        creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
        bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
        bus.connect()
        try:
            def status() -> dict[str, Any]:
                reply = bus.request(API, b"", {"method": "GET", "path": "/api/v1/cameras/declared/status",
                                               "x-api-key": tenant["api_key"]})
                assert reply.status == 200, reply.json()
                state: dict[str, Any] = reply.json()
                return state

            _eventually(lambda: status()["state"] == "running")
        finally:
            bus.close()
    finally:
        server.stop()


def subprocess_serve(server: RepoServer) -> subprocess.CompletedProcess[str]:
    """`facewatch serve` run to its end (for a start that must fail)."""
    return subprocess.run([sys.executable, "-m", "facewatch", "serve"], env=server.env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def test_two_nodes_sharing_a_database_each_run_their_own_cameras(tmp_path: Path, models_dir: Path,
                                                                   shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / 'short_hamilton_clip.mp4'}"
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    roots = json.dumps([str(shared_data / "video")])
    alpha = RepoServer(tmp_path / "alpha", models_dir, database, FACEWATCH_WATCHER__NODE="alpha",
                       FACEWATCH_WATCHER__FILE_ROOTS=roots)
    tenant = alpha.create_tenant("acme")
    alpha.start()
    creds = json.loads((alpha.data_dir / "broker-credentials.json").read_text())
    beta = RepoServer(tmp_path / "beta", models_dir, database, FACEWATCH_WATCHER__NODE="beta",
                      FACEWATCH_WATCHER__FILE_ROOTS=roots,
                      FACEWATCH_BROKER__URL=f"stomp://{creds['login']}:{creds['passcode']}@127.0.0.1:{alpha.stomp_port}/")
    beta.start()
    bus = BusClient(BrokerAddress("127.0.0.1", alpha.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    running: dict[str, set[int]] = {"east": set(), "west": set()}
    states: dict[str, list[str]] = {"east": [], "west": []}

    def on_event(message: Any) -> None:
        event = json.loads(message.body)
        if event.get("type") == "camera.status" and event["camera"] in states:
            states[event["camera"]].append(event["state"])
            if event["state"] == "running":
                running[event["camera"]].add(event["pid"])

    bus.subscribe("/topic/watcher.*", on_event, receipt=True)

    def call(method: str, path: str, body: Any = b"") -> Reply:
        return bus.request(API, body, {"method": method, "path": path, "x-api-key": tenant["api_key"]}, timeout_s=30)

    try:
        # Requests land on either server (they compete for the API queue); the node decides where it runs.
        for camera, node in (("east", "beta"), ("west", "alpha")):
            reply = call("POST", "/api/v1/cameras", {"id": camera, "url": clip, "loop": True, "node": node})
            assert reply.status == 201 and reply.json()["node"] == node, reply.json()
        _eventually(lambda: all(running.values()))
        assert {_parent_pid(p) for p in running["east"]} == {beta.proc.pid}  # type: ignore[union-attr]
        assert {_parent_pid(p) for p in running["west"]} == {alpha.proc.pid}  # type: ignore[union-attr]
        for _ in range(4):  # whichever server answers knows the state (once the report or event reached it)
            _eventually(lambda: call("GET", "/api/v1/cameras/east/status").json()["state"] == "running", 10,
                        "east running, as either server knows it")
            assert call("GET", "/api/v1/cameras/east/status").json()["node"] == "beta"
        assert call("POST", "/api/v1/cameras/east/stop").status == 200
        _eventually(lambda: "stopped" in states["east"])
        alpha_pid_before = alpha.proc.pid  # type: ignore[union-attr]
        beta.stop()
        alpha.stop()
        alpha.start()
        beta.start()
        assert bus.wait_connected(30)
        running["west"].clear()
        _eventually(lambda: bool(running["west"]))
        assert {_parent_pid(p) for p in running["west"]} == {alpha.proc.pid} != {alpha_pid_before}  # type: ignore[union-attr]
        assert call("GET", "/api/v1/cameras/east").json()["enabled"] is False
        # Stopped east did not come back: only beta, its node, could start it, and beta started its cameras
        # before it answered its first request. Its supervisor says so; alpha answers for east from the
        # events it has seen (its answer has "as_of"), so ask until beta answers.
        def from_beta() -> dict[str, Any] | None:
            status: dict[str, Any] = call("GET", "/api/v1/cameras/east/status").json()
            return None if "as_of" in status else status

        own = eventually(from_beta, timeout_s=30, what="beta's own answer for east")
        assert own["node"] == "beta" and own["state"] == "stopped" and own["worker"] is None, own
        assert len(running["east"]) == 1
    finally:
        bus.close()
        beta.stop()
        alpha.stop()
