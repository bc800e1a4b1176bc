"""Face grouping end to end: a real `facewatch serve` on SQLite and PostgreSQL,
the shared photos grouped over REST, the operations, promotion, STOMP, and
groups fed by a watcher running the shared clip."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.client import BrokerAddress, BusClient
from tests.waiting import eventually

from .cluster import drop_rabbit_vhost, rabbit_vhost
from .conftest import RawStomp
from .repo_server import Http, RepoServer
from .test_repo_api import PG, _drop_database, _postgres_database

pytestmark = pytest.mark.data

PEOPLE = ("alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie")
SINGLE_PROBES = {"obama1.jpg": "obama", "obama-240p.jpg": "obama", "obama-480p.jpg": "obama",
                 "obama-720p.jpg": "obama", "obama-1080p.jpg": "obama", "obama_small.jpg": "obama",
                 "alex_lacamoire1.jpg": "alex_lacamoire", "johnsnow_test1.jpg": "kit_harington"}
PAIR_PROBES = {"kit_with_rose.jpg": {"kit_harington", "rose_leslie"}, "obama_and_biden.jpg": {"obama", "biden"},
               "two_people.jpg": {"obama", "biden"}}


class Grouped:
    """A server with every enrol and probe photo grouped, and which group each photo's faces went to."""

    def __init__(self, server: RepoServer, http: Http, other: Http, faces: dict[str, list[dict[str, Any]]],
                 events: list[dict[str, Any]], bus: BusClient, tenant: dict[str, str], other_key: str,
                 own_events: list[dict[str, Any]]) -> None:
        self.server, self.http, self.other, self.faces, self.events, self.bus = server, http, other, faces, events, bus
        self.api_key, self.tenant_id, self.other_key = tenant["api_key"], tenant["tenant_id"], other_key
        self.own_events = own_events  # what the tenant's application reads on its own topics

    def current_groups(self) -> dict[str, str]:
        """Face id -> the group it is in now (refinement and operations move faces)."""
        where = {}
        for group in self.http.call("GET", "/api/v1/groups?limit=500").body["groups"]:
            for face in self.http.call("GET", f"/api/v1/groups/{group['id']}").body["faces"]:
                where[face["id"]] = group["id"]
        return where

    def person_group(self, person: str, where: dict[str, str] | None = None) -> str:
        """The group of a person's enrolment photos (their largest faces)."""
        where = where or self.current_groups()
        groups = {where[self.faces[name][0]["face"]] for name in self.faces if name.startswith(f"{person}/")}
        assert len(groups) == 1, (person, groups)
        return groups.pop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def grouped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
            shared_data: Path) -> Iterator[Grouped]:
    db = _postgres_database() if request.param == "postgres" else None
    server = RepoServer(tmp_path_factory.mktemp(f"grouping-{request.param}"), models_dir,
                        f"{PG}/{db}" if db else None)
    tenant, other = server.create_tenant("acme"), server.create_tenant("globex")
    server.start()
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    events: list[dict[str, Any]] = []
    bus.subscribe("/topic/grouping.events", lambda m: events.append(json.loads(m.body)), receipt=True)
    app = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, "app", tenant["api_key"]), client_name="app")
    app.connect()
    own_events: list[dict[str, Any]] = []
    app.subscribe(f"/topic/tenant.{tenant['tenant_id']}.#", lambda m: own_events.append(json.loads(m.body)),
                  receipt=True)
    http = server.http(api_key=tenant["api_key"])
    faces: dict[str, list[dict[str, Any]]] = {}
    photos = [p for person in PEOPLE for p in sorted((shared_data / "faces" / "enroll" / person).iterdir())]
    photos += sorted((shared_data / "faces" / "probe").iterdir())
    for photo in photos:
        reply = http.call("POST", "/api/v1/groups/images", files={"file": (photo.name, photo.read_bytes())})
        assert reply.status == 200, (photo, reply.body)
        faces[f"{photo.parent.name}/{photo.name}"] = reply.body["faces"]
    assert http.call("POST", "/api/v1/groups/refine").status == 200
    yield Grouped(server, http, server.http(api_key=other["api_key"]), faces, events, bus, tenant, other["api_key"],
                  own_events)
    app.close()
    bus.close()
    server.stop()
    if db:
        _drop_database(db)


def test_the_shared_photos_come_out_as_one_group_per_person(grouped: Grouped) -> None:
    where = grouped.current_groups()
    groups = {person: grouped.person_group(person, where) for person in PEOPLE}
    assert len(set(groups.values())) == len(PEOPLE)  # nobody shares a group
    for probe, person in SINGLE_PROBES.items():
        assert where[grouped.faces[f"probe/{probe}"][0]["face"]] == groups[person], probe
    for probe, people in PAIR_PROBES.items():
        found = {where[f["face"]] for f in grouped.faces[f"probe/{probe}"]}
        assert {groups[p] for p in people} <= found, probe
    obama = grouped.http.call("GET", f"/api/v1/groups/{groups['obama']}").body
    assert obama["face_count"] == 2 + 6 + 2  # enrolment, the six single probes, the two pair photos
    assert obama["best_face"] in {f["id"] for f in obama["faces"]} and obama["status"] == "active"
    kinds = {e["type"] for e in grouped.events}
    assert {"group.created", "group.grown"} <= kinds


def test_a_tenant_reads_its_own_grouping_and_repo_changes_and_no_one_elses(grouped: Grouped,
                                                                          shared_data: Path) -> None:
    placed = sum(len(faces) for faces in grouped.faces.values())
    eventually(lambda: sum(e["type"] in ("group.created", "group.grown") for e in grouped.own_events) >= placed,
               timeout_s=10, what="a grouping event for each face placed")
    grouping = [e for e in grouped.own_events if e["type"] in ("group.created", "group.grown")]
    assert len(grouping) == placed and {e["tenant"] for e in grouping} == {grouped.tenant_id}
    assert {e["face"] for e in grouping} == {f["face"] for faces in grouped.faces.values() for f in faces}
    assert grouped.http.call("POST", "/api/v1/galleries", {"name": "own-events"}).status == 201
    assert grouped.http.call("POST", "/api/v1/galleries/own-events/subjects", {"id": "s", "name": "S"}).status == 201
    photo = shared_data / "faces" / "enroll" / "obama" / "obama.jpg"
    added = grouped.http.call("POST", "/api/v1/galleries/own-events/subjects/s/faces",
                              files={"file": ("o.jpg", photo.read_bytes())})
    assert added.status == 201, added.body
    face = eventually(lambda: next((e for e in grouped.own_events if e["type"] == "face.added"), None),
                      timeout_s=10, what="face.added on the tenant's repo topic")
    assert face["gallery"] == "own-events" and face["embedding"] is None  # changes, not vectors
    for destination in (f"/topic/tenant.{grouped.tenant_id}.grouping", f"/topic/tenant.{grouped.tenant_id}.#",
                        "/topic/tenant.*.grouping", "/topic/tenant.#", "/topic/grouping.events"):
        peer = RawStomp(grouped.server.stomp_port)
        assert peer.connect("app", grouped.other_key).command == "CONNECTED"
        peer.send_frame("SUBSCRIBE", {"id": "1", "destination": destination, "receipt": "r"})
        answer = peer.recv()
        assert answer.command == "ERROR" and answer.headers["message"] == "access refused", destination
        peer.close()


def test_listing_crops_and_isolation(grouped: Grouped) -> None:
    page = grouped.http.call("GET", "/api/v1/groups?limit=2&offset=1").body
    assert len(page["groups"]) == 2 and page["total"] >= len(PEOPLE)
    group = grouped.person_group("kit_harington")
    face = grouped.http.call("GET", f"/api/v1/groups/{group}").body["faces"][0]
    crop = grouped.http.call("GET", f"/api/v1/groups/{group}/faces/{face['id']}/crop")
    assert crop.status == 200 and crop.raw[:2] == b"\xff\xd8"
    assert grouped.other.call("GET", f"/api/v1/groups/{group}").status == 404
    assert grouped.other.call("GET", "/api/v1/groups").body == {"groups": [], "total": 0, "version": 0,
                                                                "indexed_version": 0}  # its own change sequence
    assert grouped.other.call("POST", f"/api/v1/groups/{group}/ignore", {"ignore": True}).status == 404
    assert Http(grouped.server.base).call("GET", "/api/v1/groups").status == 401
    assert grouped.http.call("GET", "/api/v1/groups?status=odd").body["code"] == "BAD_PARAM"
    over_stomp = grouped.bus.request("/queue/facewatch.api", b"", {"method": "GET", "path": "/api/v1/groups?limit=1",
                                                                   "x-api-key": grouped.api_key})
    assert over_stomp.status == 200 and over_stomp.json()["total"] == page["total"]


def test_merge_move_remove_ignore_and_delete(grouped: Grouped) -> None:
    http = grouped.http
    alex, lin = grouped.person_group("alex_lacamoire"), grouped.person_group("lin_manuel_miranda")
    alex_faces = [f["id"] for f in http.call("GET", f"/api/v1/groups/{alex}").body["faces"]]
    merged = http.call("POST", f"/api/v1/groups/{lin}/merge", {"groups": [alex]})
    assert merged.status == 200 and merged.body["face_count"] == 1 + len(alex_faces)
    assert http.call("GET", f"/api/v1/groups/{alex}").status == 404
    # Undo by hand: a new group for Alex is made by moving his faces into... his first face's own group.
    assert http.call("POST", f"/api/v1/groups/{lin}/merge", {"groups": []}).status == 400
    removed = http.call("DELETE", f"/api/v1/groups/{lin}/faces/{alex_faces[0]}")
    assert removed.status == 204
    assert http.call("GET", f"/api/v1/groups/{lin}").body["face_count"] == len(alex_faces)
    rose = grouped.person_group("rose_leslie")
    moved = http.call("POST", f"/api/v1/groups/{rose}/faces", {"faces": alex_faces[1:]})
    assert moved.status == 200
    assert http.call("POST", f"/api/v1/groups/{rose}/faces", {"faces": ["nope"]}).status == 404
    ignored = http.call("POST", f"/api/v1/groups/{lin}/ignore", {"ignore": True})
    assert ignored.body["status"] == "ignored"
    assert [g["id"] for g in http.call("GET", "/api/v1/groups?status=ignored").body["groups"]] == [lin]
    assert http.call("DELETE", f"/api/v1/groups/{lin}").status == 204
    assert http.call("GET", f"/api/v1/groups/{lin}").status == 404
    assert "group.merged" in {e["type"] for e in grouped.events}


def test_promote_then_identify_finds_the_new_subject(grouped: Grouped, shared_data: Path) -> None:
    http = grouped.http
    assert http.call("POST", "/api/v1/galleries", {"name": "people"}).status == 201
    biden = grouped.person_group("biden")
    promoted = http.call("POST", f"/api/v1/groups/{biden}/promote",
                         {"gallery": "people", "subject": "joe", "name": "Joe Biden"})
    assert promoted.status == 200, promoted.body
    assert promoted.body["status"] == "promoted" and promoted.body["subject"] == {"gallery": "people", "subject": "joe"}
    again = http.call("POST", f"/api/v1/groups/{biden}/promote", {"gallery": "people", "subject": "joe2"})
    assert again.status == 409
    subject = http.call("GET", "/api/v1/galleries/people/subjects/joe").body
    assert subject["name"] == "Joe Biden" and 1 <= subject["faces"] <= 5
    probe = (shared_data / "faces" / "probe" / "obama_and_biden.jpg").read_bytes()
    found = http.call("POST", "/api/v1/identify", files={"file": ("p.jpg", probe)}, fields={"galleries": "people"})
    assert found.status == 200
    assert "joe" in {f["matches"][0]["subject"] for f in found.body["faces"] if f["matches"]}
    assert "group.promoted" in {e["type"] for e in grouped.events}
    kit = grouped.person_group("kit_harington")
    assert http.call("POST", f"/api/v1/groups/{kit}/promote", {"gallery": "nowhere"}).status == 404
    assert http.call("POST", f"/api/v1/groups/{kit}/promote", {"gallery": "people", "subject": "a/b"}).status == 400


def test_watchers_unknown_faces_are_grouped_and_a_promoted_group_is_recognised(
        tmp_path: Path, models_dir: Path, shared_data: Path) -> None:
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    server = RepoServer(tmp_path / "fed", models_dir, None,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(clip.parent)]))
    tenant = server.create_tenant("theatre")
    server.start()
    http = server.http(api_key=tenant["api_key"])
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    try:
        placed = threading.Event()
        recognized: list[dict[str, Any]] = []
        bus.subscribe("/topic/grouping.events",
                      lambda m: placed.set() if json.loads(m.body).get("camera") == "stage" else None, receipt=True)
        bus.subscribe("/topic/watcher.stage", lambda m: recognized.append(json.loads(m.body))
                      if json.loads(m.body)["type"] == "face.recognized" else None, receipt=True)
        assert http.call("POST", "/api/v1/galleries", {"name": "cast"}).status == 201
        registered = bus.request("/queue/facewatch.api", {"id": "stage", "url": f"file://{clip}", "loop": True,
                                                          "galleries": ["cast"], "cooldown_s": 0},
                                 {"method": "POST", "path": "/api/v1/cameras", "x-api-key": tenant["api_key"]})
        assert registered.status == 201, registered.json()
        assert placed.wait(90), "no face.unknown was grouped"
        listed = http.call("GET", "/api/v1/groups?camera=stage").body
        assert listed["total"] >= 1
        group = max(listed["groups"], key=lambda g: g["face_count"])
        assert group["cameras"] == ["stage"]  # the list names the cameras, as the group does
        detail = http.call("GET", f"/api/v1/groups/{group['id']}").body
        assert detail["cameras"] == ["stage"] and detail["faces"][0]["source"] == "camera"
        assert detail["faces"][0]["track"] is not None
        # The unknown person (Lin-Manuel Miranda, the only face in the clip sharp and
        # frontal enough) becomes a subject, and the running camera recognises them.
        promoted = http.call("POST", f"/api/v1/groups/{group['id']}/promote", {"gallery": "cast", "subject": "lead"})
        assert promoted.status == 200, promoted.body
        eventually(lambda: any(e["subject"]["id"] == "lead" for e in recognized), timeout_s=60,
                   what="the promoted subject to be recognised")
    finally:
        bus.close()
        server.stop()


def test_batch_grouping_job_reports_progress_and_lists_its_groups(grouped: Grouped, shared_data: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for person in ("obama", "biden"):
            for photo in sorted((shared_data / "faces" / "enroll" / person).iterdir()):
                archive.writestr(f"batch/{person}-{photo.name}", photo.read_bytes())
        archive.writestr("notes/readme.txt", b"not an image: skipped")
    progress: list[dict[str, Any]] = []
    sub = grouped.bus.subscribe("/topic/jobs.*", lambda m: progress.append(json.loads(m.body)), receipt=True)
    try:
        accepted = grouped.http.call("POST", "/api/v1/groups/jobs", files={"file": ("set.zip", buffer.getvalue())})
        assert accepted.status == 202, accepted.body
        job_id = accepted.body["id"]
        assert accepted.body["total"] == 4 and accepted.body["events"] == f"/topic/jobs.{job_id}"
        # The runner publishes the job as it ended last of all, after writing it.
        eventually(lambda: any(p["job"] == job_id and p["status"] != "running" for p in progress), timeout_s=60,
                   what="the job's last event")
        job = grouped.http.call("GET", f"/api/v1/jobs/{job_id}").body
        assert job["status"] == "done", job
    finally:
        grouped.bus.unsubscribe(sub)
    assert job["kind"] == "group" and job["done"] == 4 and job["result"]["failed"] == []
    assert job["result"]["faces"] >= 4
    where = grouped.current_groups()
    # Obama's and Biden's faces went to their existing groups (or were merged into them).
    assert {grouped.person_group("obama", where), grouped.person_group("biden", where)} <= {
        where.get(g, g) for g in job["result"]["groups"]} | set(job["result"]["groups"])
    mine = [p for p in progress if p["job"] == job_id]
    assert [p["done"] for p in mine if p["status"] == "running"] == [2, 4] and mine[-1]["status"] == "done"
    bad = grouped.http.call("POST", "/api/v1/groups/jobs", files={"file": ("x.zip", b"not a zip")})
    assert bad.status == 400 and bad.body["code"] == "BAD_PARAM"


def test_groups_survive_a_restart(grouped: Grouped, shared_data: Path) -> None:
    before = grouped.http.call("GET", "/api/v1/groups?limit=500").body
    obama = grouped.person_group("obama")
    grouped.server.stop()
    grouped.server.start()
    assert grouped.bus.wait_connected(30)
    assert grouped.http.call("GET", "/api/v1/groups?limit=500").body == before
    # The index came back too: a new photo of Obama joins his group, not a new one.
    photo = (shared_data / "faces" / "probe" / "obama1.jpg").read_bytes()
    placed = grouped.http.call("POST", "/api/v1/groups/images", files={"file": ("o.jpg", photo)}).body["faces"]
    assert placed[0]["group"] == obama and placed[0]["new_group"] is False


def test_two_nodes_place_each_unknown_face_once(tmp_path: Path, models_dir: Path, shared_data: Path,
                                                rabbitmq: BrokerAddress) -> None:
    """Both nodes group (PostgreSQL + RabbitMQ); a camera on one of them: each face.unknown is one grouped face."""
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    db = _postgres_database()
    assert db is not None
    vhost = rabbit_vhost()  # the two nodes' own: other servers on this RabbitMQ would take their requests
    rabbitmq = BrokerAddress(rabbitmq.host, rabbitmq.port, rabbitmq.login, rabbitmq.passcode, vhost or "/")
    nodes = [RepoServer(tmp_path / name, models_dir, f"{PG}/{db}", FACEWATCH_WATCHER__NODE=name,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(clip.parent)]),
                        FACEWATCH_BROKER__URL=f"stomp://guest:guest@127.0.0.1:{rabbitmq.port}/{vhost or ''}")
             for name in ("alpha", "beta")]
    tenant = nodes[0].create_tenant("theatre")
    for node in nodes:
        node.start()
    http = nodes[1].http(api_key=tenant["api_key"])
    bus = BusClient(rabbitmq)
    bus.connect()
    unknown: dict[str, int] = {}  # event id -> track
    ended = threading.Event()

    def on_event(message: Any) -> None:
        event = json.loads(message.body)
        if event["type"] == "face.unknown":
            unknown[event["id"]] = event["track"]
        elif event["type"] == "camera.status" and event["state"] == "stopped":
            ended.set()

    try:
        bus.subscribe("/topic/watcher.hall", on_event, receipt=True)
        assert http.call("POST", "/api/v1/galleries", {"name": "nobody"}).status == 201
        registered = bus.request("/queue/facewatch.api", {"id": "hall", "url": f"file://{clip}", "loop": False,
                                                          "galleries": ["nobody"], "node": "alpha"},
                                 {"method": "POST", "path": "/api/v1/cameras", "x-api-key": tenant["api_key"]},
                                 timeout_s=30)
        assert registered.status == 201, registered.json()
        assert ended.wait(120), "the clip did not play to its end"
        assert unknown, "the clip gave no face.unknown"

        def grouped_faces() -> list[dict[str, Any]]:
            faces = []
            for group in http.call("GET", "/api/v1/groups?camera=hall&limit=500").body["groups"]:
                faces += http.call("GET", f"/api/v1/groups/{group['id']}").body["faces"]
            return faces

        eventually(lambda: len(grouped_faces()) >= len(unknown), timeout_s=60, what="every unknown face grouped")
        faces = grouped_faces()
        assert len(faces) == len(unknown)  # placements per unknown face: exactly 1.0, not one per node
        assert sorted(f["track"] for f in faces) == sorted(unknown.values())  # one per event, each its own
    finally:
        bus.close()
        for node in nodes:
            node.stop()
        _drop_database(db)
        drop_rabbit_vhost(vhost)
