"""Sightings end to end: a real `facewatch serve` on SQLite and PostgreSQL with a real camera (the shared
clip, looped), over REST and STOMP.

One scene per database, its tests in file order: the camera watches an empty
gallery, so Lin-Manuel Miranda's tracks are unknown sightings, grouped; the
group is promoted (earlier sightings are named after the fact, then the camera
recognises him); listings, crops, search by face; a client follows the
sightings across a restart of the server; he is erased; retention drops crops.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import LargeBinary, Select, String, Text, column, create_engine, inspect, select, table
from sqlalchemy.engine import make_url

from broker.client import BrokerAddress, BusClient
from sightings.follow import SightingFollower
from tests.waiting import eventually

from .repo_server import Http, RepoServer
from .test_repo_api import PG, _drop_database, _postgres_database

pytestmark = pytest.mark.data

API = "/queue/facewatch.api"
NAME = "Lin-Manuel Erasable"  # what must be gone from everywhere after the erasure


class Scene:
    def __init__(self, server: RepoServer, storage_url: str, tenant: dict[str, str], other: dict[str, str],
                 bus: BusClient, events: list[dict[str, Any]], lin_photo: bytes) -> None:
        self.server, self.storage_url, self.tenant, self.bus, self.events = server, storage_url, tenant, bus, events
        self.http = server.http(api_key=tenant["api_key"])
        self.other = server.http(api_key=other["api_key"])
        self.lin_photo = lin_photo
        self.facts: dict[str, Any] = {}  # what one test leaves for the next

    def stomp(self, method: str, path: str, body: Any = b"", key: str | None = None) -> tuple[int, Any]:
        reply = self.bus.request(API, body, {"method": method, "path": path,
                                             "x-api-key": key or self.tenant["api_key"]}, timeout_s=30)
        return reply.status, reply.json()

    def sightings(self, query: str = "") -> list[dict[str, Any]]:
        reply = self.http.call("GET", f"/api/v1/sightings?limit=1000{query}")
        assert reply.status == 200, reply.body
        found: list[dict[str, Any]] = reply.body["sightings"]
        return found


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
          shared_data: Path) -> Iterator[Scene]:
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    db = _postgres_database() if request.param == "postgres" else None
    data_dir = tmp_path_factory.mktemp(f"sightings-{request.param}")
    url = f"{PG}/{db}" if db else f"sqlite:///{data_dir / 'facewatch.db'}"
    server = RepoServer(data_dir, models_dir, url, FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(clip.parent)]),
                        FACEWATCH_SIGHTINGS__RETENTION_INTERVAL_S="0.5", FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0")
    tenant, other = server.create_tenant("acme"), server.create_tenant("globex")
    photo = (shared_data / "faces" / "enroll" / "lin_manuel_miranda" / "lin-manuel-miranda.png").read_bytes()
    server.start()
    try:
        yield from _scene(request.param, server, url, tenant, other, photo, clip)
    finally:
        server.stop()
        if db:
            _drop_database(db)


def _scene(kind: str, server: RepoServer, url: str, tenant: dict[str, str], other: dict[str, str], photo: bytes,
           clip: Path) -> Iterator[Scene]:
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    events: list[dict[str, Any]] = []
    bus.subscribe(f"/topic/tenant.{tenant['tenant_id']}.sightings", lambda m: events.append(json.loads(m.body)),
                  receipt=True)
    scene = Scene(server, url, tenant, other, bus, events, photo)
    assert scene.http.call("POST", "/api/v1/galleries", {"name": "cast"}).status == 201
    status, body = scene.stomp("POST", "/api/v1/cameras", {"id": f"stage-{kind}", "url": f"file://{clip}",
                                                           "loop": True, "galleries": ["cast"], "cooldown_s": 0})
    assert status == 201, body
    scene.facts["camera"] = f"stage-{kind}"
    try:
        yield scene
    finally:
        bus.close()


def test_unknown_faces_become_sightings_with_their_group_and_crop(scene: Scene) -> None:
    camera = scene.facts["camera"]
    placed = eventually(lambda: [s for s in scene.sightings(f"&camera={camera}&decision=unknown") if s["group"]],
                        timeout_s=120, what="an unknown sighting placed in a face group")
    sighting = placed[-1]
    assert sighting["camera"] == camera and sighting["subject"] is None and sighting["embedding"] is True
    assert sighting["first_seen"] <= sighting["seen_at"] <= sighting["last_seen"] and sighting["seq"] >= 1
    assert sighting["quality"] > 0 and sighting["model_id"] and isinstance(sighting["track"], int)
    crop = scene.http.call("GET", sighting["crop"])
    assert crop.status == 200 and crop.raw[:2] == b"\xff\xd8"
    assert scene.http.call("GET", f"/api/v1/sightings/{sighting['id']}").body == sighting
    # Another tenant: the very answers of a sighting that does not exist.
    for path in ("/api/v1/sightings/{}", "/api/v1/sightings/{}/crop"):
        theirs = scene.other.call("GET", path.format(sighting["id"]))
        nothing = scene.other.call("GET", path.format("0" * 32))
        assert theirs.status == nothing.status == 404
        assert theirs.body["code"] == nothing.body["code"] and \
            theirs.body["reason"].replace(sighting["id"], "0" * 32) == nothing.body["reason"]
    assert scene.other.call("GET", "/api/v1/sightings").body == {"sightings": [], "before": None}
    searched = scene.other.call("POST", "/api/v1/sightings/search", {"sighting": sighting["id"]})
    assert searched.status == 404
    assert Http(scene.server.base).call("GET", "/api/v1/sightings").status == 401
    # The same over STOMP.
    status, body = scene.stomp("GET", f"/api/v1/sightings/{sighting['id']}")
    assert status == 200 and body == sighting
    groups = Counter(s["group"] for s in placed)
    scene.facts["group"] = groups.most_common(1)[0][0]


def test_promoting_the_group_names_its_earlier_unknown_sightings(scene: Scene) -> None:
    group = scene.facts["group"]
    before = [s for s in scene.sightings(f"&group={group}") if s["decision"] == "unknown"]
    assert before
    promoted = scene.http.call("POST", f"/api/v1/groups/{group}/promote",
                               {"gallery": "cast", "subject": "lead", "name": NAME})
    assert promoted.status == 200, promoted.body
    relabelled = eventually(lambda: next((e for e in scene.events if e["type"] == "sightings.relabelled"
                                          and e["subject"] == "lead" and e["count"]), None),
                            timeout_s=60, what="sightings.relabelled for the promoted subject")
    assert relabelled["trigger"] == "promoted" and relabelled["group"] == group and relabelled["gallery"] == "cast"
    named = [s for s in before if s["id"] in relabelled["sightings"]]
    assert named  # the group's best faces are the subject's faces now: their sightings are named for sure
    for sighting in named:
        now = scene.http.call("GET", f"/api/v1/sightings/{sighting['id']}").body
        assert now["decision"] == "recognized" and now["subject"] == {"id": "lead", "name": NAME, "gallery": "cast"}
        assert now["relabelled_at"] is not None and now["similarity"] >= now["threshold"]
        assert now["seq"] == sighting["seq"]  # named, not renumbered
    # And the running camera recognises him from then on: sightings recognised live.
    live = eventually(lambda: [s for s in scene.sightings("&decision=recognized") if s["relabelled_at"] is None],
                      timeout_s=90, what="a sighting the camera recognised")
    assert live[0]["subject"]["id"] == "lead" and live[0]["similarity"] >= live[0]["threshold"]
    scene.facts["live"] = live[0]


def test_listing_filters_paging_and_cursor(scene: Scene) -> None:
    def four() -> list[dict[str, Any]] | None:
        found = scene.sightings()
        return found if len(found) >= 4 else None

    everything = eventually(four, timeout_s=120, what="four sightings")
    upto = everything[0]["seq"]  # the camera goes on: compare what existed then

    def listed(query: str) -> list[dict[str, Any]]:
        return [s for s in scene.sightings(query) if s["seq"] <= upto]

    assert [s["seq"] for s in everything] == sorted((s["seq"] for s in everything), reverse=True)  # newest first
    lead = listed("&gallery=cast&subject=lead")
    assert lead and {s["subject"]["id"] for s in lead} == {"lead"}
    assert [s["id"] for s in listed(f"&camera={scene.facts['camera']}")] == [s["id"] for s in everything]
    assert scene.sightings("&camera=elsewhere") == []
    assert all(s["group"] == scene.facts["group"] for s in listed(f"&group={scene.facts['group']}"))
    middle = everything[len(everything) // 2]["seen_at"]
    assert listed(f"&from={middle}") and all(s["seen_at"] >= middle for s in listed(f"&from={middle}"))
    assert listed(f"&to={middle}") and all(s["seen_at"] <= middle for s in listed(f"&to={middle}"))
    first = scene.http.call("GET", "/api/v1/sightings?limit=2").body
    assert len(first["sightings"]) == 2 and first["before"] == first["sightings"][-1]["seq"]
    second = scene.http.call("GET", f"/api/v1/sightings?limit=2&before={first['before']}").body
    assert [s["seq"] for s in second["sightings"]] == [first["before"] - 1, first["before"] - 2]
    oldest = everything[-1]
    since = scene.http.call("GET", f"/api/v1/sightings?since={oldest['seq']}&limit=1000").body
    assert since["more"] is False and since["cursor"] >= since["last_seq"] >= everything[0]["seq"]
    assert [s["seq"] for s in since["sightings"]][:len(everything) - 1] == \
        sorted(s["seq"] for s in everything if s is not oldest)
    by_event = scene.http.call("GET", f"/api/v1/sightings?since={oldest['event_id']}&limit=1000").body
    assert [s["id"] for s in by_event["sightings"]][:len(everything) - 1] == \
        [s["id"] for s in since["sightings"]][:len(everything) - 1]
    status, over_stomp = scene.stomp("GET", f"/api/v1/sightings?since={oldest['seq']}&limit=1000")
    assert status == 200 and [s["id"] for s in over_stomp["sightings"]][:len(everything) - 1] == \
        [s["id"] for s in since["sightings"]][:len(everything) - 1]
    # A subject id alone: that subject in any gallery; a gallery alone: any subject of it.
    ids = {x["id"] for x in lead}
    assert {x["id"] for x in listed("&subject=lead")} == ids == {x["id"] for x in listed("&gallery=cast")}
    for query, param in (("decision=odd", "decision"), ("camera=No%20Such", "camera"), ("from=noon", "from"),
                         ("since=%25%25", "since"), ("limit=0", "limit")):
        bad = scene.http.call("GET", f"/api/v1/sightings?{query}")
        assert bad.status == 400 and bad.body["param"] == param, query
    assert scene.http.call("GET", "/api/v1/sightings?gallery=cast&subject=nobody").status == 404
    described = Http(scene.server.base).call("GET", "/api/v1/openapi.json").body["paths"]
    assert {"/api/v1/sightings", "/api/v1/sightings/search", "/api/v1/sightings/retention",
            "/api/v1/sightings/{sighting}", "/api/v1/sightings/{sighting}/crop", "/api/v1/erasures",
            "/api/v1/galleries/{gallery}/subjects/{subject}/erase"} <= set(described)
    assert set(described["/api/v1/sightings/retention"]) == {"get", "put"}
    assert scene.http.call("GET", f"/api/v1/sightings?since={'f' * 32}").status == 404


def test_search_by_face_ranks_his_sightings_and_filters_by_camera_and_time(scene: Scene) -> None:
    lead = {s["id"] for s in scene.sightings("&gallery=cast&subject=lead")}
    found = scene.http.call("POST", "/api/v1/sightings/search", files={"file": ("lin.jpg", scene.lin_photo)},
                            fields={"limit": "100"})
    assert found.status == 200, found.body
    hits = found.body["sightings"]
    assert hits and lead & {h["id"] for h in hits}  # (unknown sightings of him the cameras' rule left unnamed too)
    assert all(h["subject"] is None or h["subject"]["id"] == "lead" for h in hits)
    assert [h["match_similarity"] for h in hits] == sorted((h["match_similarity"] for h in hits), reverse=True)
    assert all(h["match_similarity"] >= found.body["threshold"] for h in hits)
    one = scene.facts["live"]
    by_sighting = scene.http.call("POST", "/api/v1/sightings/search", {"sighting": one["id"]}).body["sightings"]
    top = by_sighting[0]["match_similarity"]  # itself, or a sighting of the same track with the same embedding
    assert top > 0.99 and one["id"] in {h["id"] for h in by_sighting if h["match_similarity"] == top}
    for probe in ({"group": scene.facts["group"]}, {"gallery": "cast", "subject": "lead"}):
        assert lead & {h["id"] for h in scene.http.call("POST", "/api/v1/sightings/search", probe).body["sightings"]}
    early = min(s["seen_at"] for s in scene.sightings()) - 3600
    narrowed = scene.http.call("POST", "/api/v1/sightings/search", {"sighting": one["id"], "to": early})
    assert narrowed.status == 200 and narrowed.body["sightings"] == []
    window = scene.http.call("POST", "/api/v1/sightings/search", {"sighting": one["id"], "from": one["seen_at"] - 1,
                                                                   "to": one["seen_at"] + 1}).body["sightings"]
    assert [h["id"] for h in window][:1] == [one["id"]]
    assert scene.http.call("POST", "/api/v1/sightings/search", {"sighting": one["id"],
                                                                "cameras": ["elsewhere"]}).body["sightings"] == []
    status, body = scene.stomp("POST", "/api/v1/sightings/search", {"sighting": one["id"]})
    assert status == 200 and body["sightings"][0]["id"] == one["id"]
    assert scene.http.call("POST", "/api/v1/sightings/search", {}).status == 400
    assert scene.http.call("POST", "/api/v1/sightings/search", {"sighting": one["id"], "face_id": "x"}).status == 400


def test_a_follower_catches_up_across_a_server_restart_each_sighting_once_in_order(scene: Scene) -> None:
    creds = json.loads((scene.server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", scene.server.stomp_port, creds["login"], creds["passcode"]),
                    client_name="follower")
    bus.connect()
    got: list[int] = []
    arrived = threading.Condition()

    def on_sighting(sighting: dict[str, Any]) -> None:
        with arrived:
            got.append(sighting["seq"])
            arrived.notify_all()

    follower = SightingFollower(bus, scene.tenant["tenant_id"], {"x-api-key": scene.tenant["api_key"]}, on_sighting,
                                page=3)  # small pages: the catch-up takes several
    try:
        follower.start()
        newest = scene.sightings()[0]["seq"]
        with arrived:
            assert arrived.wait_for(lambda: got and got[-1] >= newest, 30)
        before_restart = len(got)
        scene.server.stop()
        scene.server.start()
        assert bus.wait_connected(60) and scene.bus.wait_connected(60)
        follower.catch_up()  # what was stored while it was away (and anything the restart lost in flight)
        after = eventually(lambda: [s for s in scene.sightings() if s["stored_at"] > time.time() - 600
                                    and s["seq"] > newest], timeout_s=90, what="a sighting after the restart")
        with arrived:
            assert arrived.wait_for(lambda: got[-1] >= after[0]["seq"], 60), (got, after[0]["seq"])
        assert len(got) > before_restart
        assert got == list(range(1, got[-1] + 1))  # each once, in order, none missing (nothing expired yet)
    finally:
        follower.stop()
        bus.close()


def _database_holds(storage_url: str, needle: bytes) -> list[str]:
    """Table.column of every value in the database that contains ``needle``."""
    url = storage_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            for name in inspector.get_table_names():
                for info in inspector.get_columns(name):
                    if not isinstance(info["type"], (String, Text, LargeBinary)):
                        continue
                    query: Select[Any] = select(column(info["name"])).select_from(table(name))
                    values: list[Any] = list(conn.execute(query).scalars())
                    for value in values:
                        raw = value.encode() if isinstance(value, str) else bytes(value) if value is not None else b""
                        if needle in raw:
                            found.append(f"{name}.{info['name']}")
    finally:
        engine.dispose()
    return found


def test_erasing_him_leaves_nothing_of_him_but_the_audit_row(scene: Scene) -> None:
    lead = scene.sightings("&gallery=cast&subject=lead")
    crops = [scene.http.call("GET", s["crop"]).raw for s in lead if s["crop"]]
    assert crops
    faces = scene.http.call("GET", "/api/v1/galleries/cast/subjects/lead/faces").body["faces"]
    assert faces and any((scene.server.data_dir / "images").rglob("*"))
    erased = scene.http.call("POST", "/api/v1/galleries/cast/subjects/lead/erase")
    assert erased.status == 200, erased.body
    counts = erased.body["counts"]
    assert counts["faces"] == len(faces) and counts["sightings"] >= len(lead) and counts["groups"] >= 1
    assert counts["crops"] >= len(crops) and counts["group_faces"] >= 1 and counts["images"] >= 1
    erased_at = time.time()
    # The API: no subject, no faces, no group, no crops, no names; the sightings are bare events.
    assert scene.http.call("GET", "/api/v1/galleries/cast/subjects/lead").status == 404
    assert scene.http.call("GET", f"/api/v1/faces/{faces[0]['id']}").status == 404
    assert scene.http.call("GET", f"/api/v1/groups/{scene.facts['group']}").status == 404
    for sighting in lead:
        now = scene.http.call("GET", f"/api/v1/sightings/{sighting['id']}").body
        assert now["decision"] == "erased" and now["subject"] is None and now["crop"] is None
        assert now["embedding"] is False and now["group"] is None and now["seq"] == sighting["seq"]
        assert scene.http.call("GET", f"/api/v1/sightings/{sighting['id']}/crop").status == 404
    # The index: his face finds none of his sightings (from now on he is a stranger to the cameras).
    found = scene.http.call("POST", "/api/v1/sightings/search", files={"file": ("lin.jpg", scene.lin_photo)},
                            fields={"to": str(erased_at), "threshold": "-1", "limit": "1000"}).body["sightings"]
    assert {h["id"] for h in found} & {s["id"] for s in lead} == set()
    # The image store: the promoted faces' images are gone.
    assert [p for p in (scene.server.data_dir / "images").rglob("*") if p.is_file()] == []
    # The database (every text and binary column of every table): not his name, not a crop of him.
    assert _database_holds(scene.storage_url, NAME.encode()) == []
    for crop in crops:
        assert _database_holds(scene.storage_url, crop) == []
    if scene.storage_url.startswith("sqlite"):  # and not in the file's free pages or its write-ahead log
        path = Path(str(make_url(scene.storage_url).database))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert NAME.encode() not in raw and not any(crop in raw for crop in crops)
    # The audit log: who and when, how much; never what.
    log = scene.http.call("GET", "/api/v1/erasures").body["erasures"]
    assert len(log) == 1 and log[0]["id"] == erased.body["erasure"] and log[0]["finished_at"] is not None
    assert log[0]["actor"].startswith("api_key:") and log[0]["counts"] == counts
    assert NAME not in json.dumps(log) and "lead" not in json.dumps(log)
    assert scene.other.call("GET", "/api/v1/erasures").body == {"erasures": []}
    assert next(e for e in scene.events if e["type"] == "subject.erased")["erasure"] == log[0]["id"]


def test_retention_drops_the_crop_and_keeps_the_event(scene: Scene) -> None:
    assert scene.http.call("GET", "/api/v1/sightings/retention").body["default"] is True
    newest = eventually(lambda: [s for s in scene.sightings() if s["crop"] and s["embedding"]], timeout_s=90,
                        what="a sighting with a crop")[0]
    changed = scene.http.call("PUT", "/api/v1/sightings/retention", {"crop_s": 1, "embedding_s": 1})
    assert changed.status == 200 and changed.body["crop_s"] == 1 and changed.body["recognized_s"] is not None
    def dropped() -> dict[str, Any] | None:
        now: dict[str, Any] = scene.http.call("GET", f"/api/v1/sightings/{newest['id']}").body
        return now if now["crop"] is None and now["embedding"] is False else None

    kept = eventually(dropped, timeout_s=30, what="the crop and embedding dropped")
    assert kept["seq"] == newest["seq"] and kept["camera"] == newest["camera"]  # the event is kept
    assert scene.http.call("GET", f"/api/v1/sightings/{newest['id']}/crop").status == 404
    assert scene.http.call("POST", "/api/v1/sightings/search", {"sighting": newest["id"]}).status == 409
    assert scene.http.call("GET", "/api/v1/sightings/retention").body == {
        **changed.body, "default": False}
    for body in ({"crop_s": 0}, {"crop_s": "soon"}, {"keep": 1}):
        assert scene.http.call("PUT", "/api/v1/sightings/retention", body).status == 400, body
    assert scene.other.call("GET", "/api/v1/sightings/retention").body["default"] is True
