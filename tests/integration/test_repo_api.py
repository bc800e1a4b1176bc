"""The face repo end to end: a real server, real faces, REST and STOMP, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psycopg
import pytest

from broker.client import BrokerAddress, BusClient
from tests.waiting import eventually

from .repo_server import Http, RepoServer

pytestmark = [pytest.mark.models, pytest.mark.data]

PEOPLE = ("alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie")
PG = "postgresql://postgres@127.0.0.1:5432"


def _postgres_database() -> str | None:
    name = f"fwtest_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        if os.environ.get("FWTEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL not usable: {exc} (FWTEST_REQUIRE_POSTGRES=1)")
        pytest.skip(f"PostgreSQL not usable: {exc}")
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Deployment:
    def __init__(self, server: RepoServer, tenant: dict[str, str], other: dict[str, str], shared_data: Path) -> None:
        self.server = server
        self.tenant = tenant
        self.other = other
        self.data = shared_data
        self.http = server.http(api_key=tenant["api_key"])

    def image(self, relative: str) -> bytes:
        return (self.data / relative).read_bytes()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
               shared_data: Path) -> Iterator[Deployment]:
    db = None
    url = None
    if request.param == "postgres":
        db = _postgres_database()
        url = f"{PG}/{db}"
    server = RepoServer(tmp_path_factory.mktemp(f"repo-{request.param}"), models_dir, url)
    tenant, other = server.create_tenant("acme"), server.create_tenant("globex")
    server.start()
    dep = Deployment(server, tenant, other, shared_data)
    _enrol_everyone(dep)
    yield dep
    server.stop()
    if db:
        _drop_database(db)


def _enrol_everyone(dep: Deployment) -> None:
    http = dep.http
    assert http.call("POST", "/api/v1/galleries", {"name": "people"}).status == 201
    for person in PEOPLE:
        created = http.call("POST", "/api/v1/galleries/people/subjects",
                            {"id": person, "name": person.replace("_", " ").title()})
        assert created.status == 201, created.body
        for image in sorted((dep.data / "faces" / "enroll" / person).iterdir()):
            added = http.call("POST", f"/api/v1/galleries/people/subjects/{person}/faces",
                              files={"file": (image.name, image.read_bytes())})
            assert added.status == 201, (image, added.body)
            assert len(added.body["faces"]) == 1


def _finished_job(http: Http, job_id: str, timeout_s: float) -> dict[str, Any]:
    """The job once it has ended (done, failed or cancelled)."""
    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = http.call("GET", f"/api/v1/jobs/{job_id}").body
        return job if job["status"] in ("done", "failed", "cancelled") else None

    return eventually(ended, timeout_s=timeout_s, interval_s=0.1, what=f"job {job_id} to end")


def _identified(dep: Deployment, relative: str, http: Http | None = None, **fields: str) -> set[str]:
    reply = (http or dep.http).call("POST", "/api/v1/identify", files={"file": ("p.jpg", dep.image(relative))},
                                    fields={"galleries": "people", **fields})
    assert reply.status == 200, reply.body
    return {f["matches"][0]["subject"] for f in reply.body["faces"] if f["matches"]}


PROBES = [
    ("faces/probe/obama1.jpg", {"obama"}),
    ("faces/probe/alex_lacamoire1.jpg", {"alex_lacamoire"}),
    ("faces/probe/johnsnow_test1.jpg", {"kit_harington"}),
    ("faces/probe/obama_and_biden.jpg", {"obama", "biden"}),
    ("faces/probe/two_people.jpg", {"obama", "biden"}),
    ("faces/probe/kit_with_rose.jpg", {"kit_harington", "rose_leslie"}),
]


@pytest.mark.parametrize(("probe", "expected"), PROBES)
def test_identify_probes(deployment: Deployment, probe: str, expected: set[str]) -> None:
    assert _identified(deployment, probe) == expected


def test_unenrolled_faces_match_nobody_at_medium(deployment: Deployment) -> None:
    reply = deployment.http.call("POST", "/api/v1/identify",
                                 files={"file": ("m.jpg", deployment.image("group/multiface.jpg"))},
                                 fields={"galleries": "people", "threshold": "medium", "prediction_count": "3"})
    assert reply.status == 200
    assert len(reply.body["faces"]) == 6
    assert all(face["matches"] == [] for face in reply.body["faces"])


def test_identify_json_base64_and_limits(deployment: Deployment) -> None:
    image = base64.b64encode(deployment.image("faces/probe/two_people.jpg")).decode()
    reply = deployment.http.call("POST", "/api/v1/identify", {"image": image, "galleries": ["people"], "limit": 1,
                                                              "prediction_count": 2})
    assert reply.status == 200
    (face,) = reply.body["faces"]  # the most prominent face only
    (match,) = face["matches"]  # one subject named at most; every candidate listed beside it
    assert len(face["candidates"]) == 2 and face["candidates"][0] == match
    decision = face["decision"]
    assert decision["matched"] and decision["reason"] == "matched" and match["similarity"] >= decision["threshold"]
    assert decision["runner_up"]["similarity"] == face["candidates"][1]["similarity"]
    assert decision["policy"] == {"rate": 0.001, "margin": 0.03, "min_quality": 0.3}


def test_the_threshold_of_a_rate_rises_with_the_gallery(deployment: Deployment) -> None:
    """A preset is a rate per probe: the same photo against more faces needs a higher similarity."""
    http, image = deployment.http, base64.b64encode(deployment.image("faces/probe/obama1.jpg")).decode()
    small = http.call("POST", "/api/v1/identify", {"image": image, "galleries": ["people"], "threshold": "low"})
    fixed = http.call("POST", "/api/v1/identify", {"image": image, "galleries": ["people"], "threshold": 0.5})
    one = http.call("POST", "/api/v1/verify", {"image1": image, "image2": image, "threshold": "low"})
    low_1n = small.body["faces"][0]["decision"]["threshold"]
    assert one.status == 200 and one.body["threshold"] < low_1n  # 1 comparison vs every face of the gallery
    assert fixed.body["faces"][0]["decision"]["threshold"] == 0.5 and fixed.body["faces"][0]["decision"]["policy"] \
        == {"threshold": 0.5, "margin": 0.03, "min_quality": 0.3}


def test_verify(deployment: Deployment) -> None:
    http = deployment.http
    same = http.call("POST", "/api/v1/verify",
                     files={"image1": ("a.jpg", deployment.image("faces/probe/obama1.jpg")),
                            "image2": ("b.jpg", deployment.image("faces/enroll/obama/obama2.jpg"))})
    assert same.status == 200 and same.body["verified"] is True
    diff = http.call("POST", "/api/v1/verify",
                     files={"image1": ("a.jpg", deployment.image("faces/probe/obama1.jpg")),
                            "image2": ("b.jpg", deployment.image("faces/enroll/biden/biden.jpg"))},
                     fields={"threshold": "strict"})
    assert diff.status == 200 and diff.body["verified"] is False and diff.body["policy"]["rate"] == 0.001
    assert 0.3 < diff.body["threshold"] < 0.4  # FAR 1e-3 of the shipped calibration (about 0.34)
    subject = http.call("POST", "/api/v1/verify",
                        files={"image1": ("a.jpg", deployment.image("faces/probe/johnsnow_test1.jpg"))},
                        fields={"gallery": "people", "subject": "kit_harington"})
    assert subject.body["verified"] is True
    face_id = http.call("GET", "/api/v1/galleries/people/subjects/rose_leslie/faces").body["faces"][0]["id"]
    by_face = http.call("POST", "/api/v1/verify",
                        files={"image1": ("a.jpg", deployment.image("faces/probe/johnsnow_test1.jpg"))},
                        fields={"face_id": face_id})
    assert by_face.body["verified"] is False


def test_rename_merges_and_delete_stops_matching(deployment: Deployment) -> None:
    http = deployment.http
    assert http.call("POST", "/api/v1/galleries", {"name": "scratch"}).status == 201
    for sid, name, image in (("a", "Joe", "faces/enroll/biden/biden.jpg"),
                             ("b", "Joseph", "faces/enroll/biden/biden2.jpg")):
        assert http.call("POST", "/api/v1/galleries/scratch/subjects", {"id": sid, "name": name}).status == 201
        assert http.call("POST", f"/api/v1/galleries/scratch/subjects/{sid}/faces",
                         files={"file": ("x.jpg", deployment.image(image))}).status == 201
    merged = http.call("PATCH", "/api/v1/galleries/scratch/subjects/b", {"name": "Joe"})
    assert merged.status == 200 and merged.body["id"] == "a" and merged.body["faces"] == 2
    assert http.call("GET", "/api/v1/galleries/scratch/subjects/b").status == 404
    listing = http.call("GET", "/api/v1/galleries/scratch/subjects")
    assert [s["id"] for s in listing.body["subjects"]] == ["a"] and listing.body["total"] == 1
    hit = http.call("POST", "/api/v1/identify",
                    files={"file": ("p.jpg", deployment.image("faces/probe/two_people.jpg"))},
                    fields={"galleries": "scratch"})
    assert {m["subject"] for f in hit.body["faces"] for m in f["matches"]} == {"a"}
    assert http.call("DELETE", "/api/v1/galleries/scratch/subjects/a").status == 204
    miss = http.call("POST", "/api/v1/identify",
                     files={"file": ("p.jpg", deployment.image("faces/probe/two_people.jpg"))},
                     fields={"galleries": "scratch"})
    assert all(f["matches"] == [] for f in miss.body["faces"])
    assert http.call("DELETE", "/api/v1/galleries/scratch").status == 204
    assert http.call("GET", "/api/v1/galleries/scratch").status == 404


def test_faces_resources(deployment: Deployment) -> None:
    http = deployment.http
    faces = http.call("GET", "/api/v1/galleries/people/subjects/obama/faces").body["faces"]
    assert len(faces) == 2
    one = http.call("GET", f"/api/v1/faces/{faces[0]['id']}")
    assert one.status == 200 and one.body["subject"] == "obama" and one.body["gallery"] == "people"
    image = http.call("GET", f"/api/v1/faces/{faces[0]['id']}/image")
    assert image.status == 200 and image.raw in (deployment.image("faces/enroll/obama/obama.jpg"),
                                                 deployment.image("faces/enroll/obama/obama2.jpg"))
    thumb = http.call("GET", f"/api/v1/faces/{faces[0]['id']}/thumbnail")
    assert thumb.status == 200 and thumb.raw[:2] == b"\xff\xd8"


def test_detect_with_plugins(deployment: Deployment) -> None:
    reply = deployment.http.call("POST", "/api/v1/detect",
                                 files={"file": ("g.jpg", deployment.image("group/couple.jpg"))},
                                 fields={"face_plugins": "age,gender,embedding"})
    assert reply.status == 200 and len(reply.body["faces"]) == 2
    face = reply.body["faces"][0]
    assert {"age", "gender"} <= set(face["attributes"]) and len(face["embedding"]) == 512


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/api/v1/galleries", {"raw": b"{not json", "content_type": "application/json"}, 400, "MALFORMED_JSON"),
        ("POST", "/api/v1/galleries", {"body": {"name": "people"}}, 409, "CONFLICT"),
        ("POST", "/api/v1/galleries", {"body": {"name": "bad/name"}}, 400, "BAD_PARAM"),
        ("GET", "/api/v1/galleries/nope", {}, 404, "NOT_FOUND"),
        ("GET", "/api/v1/galleries/people/subjects/nobody", {}, 404, "NOT_FOUND"),
        ("GET", "/api/v1/faces/0000", {}, 404, "NOT_FOUND"),
        ("GET", "/api/v1/nothing-here", {}, 404, "NOT_FOUND"),
        ("PUT", "/api/v1/galleries", {}, 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/api/v1/galleries/people/subjects/obama/faces",
         {"files": {"file": ("x.jpg", b"\xff\xd8\xff\xe0junk")}}, 415, "UNSUPPORTED_MEDIA"),
        ("POST", "/api/v1/galleries/people/subjects/obama/faces", {"body": {"image": "http://example.com/x.jpg"}},
         400, "BAD_PARAM"),
        ("POST", "/api/v1/galleries/people/subjects/obama/faces", {"body": {"image": "%%%not base64"}}, 400,
         "BAD_PARAM"),
        ("POST", "/api/v1/identify", {"fields": {"galleries": "people"}}, 400, "BAD_PARAM"),
        ("POST", "/api/v1/verify", {"fields": {"threshold": "extreme"}}, 400, "BAD_PARAM"),
        ("GET", "/api/v1/galleries/people/subjects?limit=0", {}, 400, "BAD_PARAM"),
    ],
)
def test_bad_input(deployment: Deployment, method: str, path: str, kwargs: dict[str, Any], status: int,
                   code: str) -> None:
    reply = deployment.http.call(method, path, **kwargs)
    assert reply.status == status, reply.body
    assert reply.body["code"] == code and reply.body["reason"]


def test_no_face_and_too_large(deployment: Deployment) -> None:
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank, "PNG")
    reply = deployment.http.call("POST", "/api/v1/galleries/people/subjects/obama/faces",
                                 files={"file": ("blank.png", blank.getvalue())})
    assert reply.status == 422 and reply.body["code"] == "NO_FACE"
    big = deployment.http.call("POST", "/api/v1/detect", files={"file": ("big.jpg", b"\xff" * (11 * 1024 * 1024))})
    assert big.status == 413 and big.body["code"] == "PAYLOAD_TOO_LARGE"
    count = deployment.http.call("GET", "/api/v1/galleries/people/subjects/obama").body["faces"]
    assert count == 2  # nothing half-written by the failed adds


def test_auth_is_required_and_tenants_are_isolated(deployment: Deployment) -> None:
    server = deployment.server
    for http in (server.http(), server.http(api_key="fwk_0123456789abcdef_wrong"), server.http(api_key="garbage"),
                 server.http(token="fwt.e30.bad")):
        reply = http.call("GET", "/api/v1/galleries")
        assert reply.status == 401 and reply.body["code"] == "AUTH_FAILED"
        assert "galleries" not in reply.body
    other = server.http(api_key=deployment.other["api_key"])
    assert other.call("GET", "/api/v1/galleries").body == {"galleries": []}
    face_id = deployment.http.call("GET", "/api/v1/galleries/people/subjects/obama/faces").body["faces"][0]["id"]
    for method, path in (("GET", "/api/v1/galleries/people"), ("GET", "/api/v1/galleries/people/subjects"),
                         ("GET", f"/api/v1/faces/{face_id}"), ("GET", f"/api/v1/faces/{face_id}/image"),
                         ("DELETE", f"/api/v1/faces/{face_id}"), ("DELETE", "/api/v1/galleries/people")):
        reply = other.call(method, path)
        assert reply.status == 404, (method, path)
        # Exactly what a never-existing id gets: nothing tells that it exists.
        ghost = other.call(method, path.replace(face_id, "f" * 32).replace("people", "ghosts"))
        assert reply.raw.replace(face_id.encode(), b"f" * 32).replace(b"people", b"ghosts") == ghost.raw
        assert "obama" not in reply.raw.decode().lower()
    still = deployment.http.call("GET", f"/api/v1/faces/{face_id}")
    assert still.status == 200  # the other tenant's DELETE touched nothing


def test_api_keys_with_scopes_are_listed_rotated_and_revoked(deployment: Deployment) -> None:
    server, full = deployment.server, deployment.http
    me = full.call("GET", "/api/v1/me").body
    assert me["tenant"] == deployment.tenant["tenant_id"] and me["scope"] == {"kind": "full"}
    assert me["topics"]["grouping"] == f"/topic/tenant.{me['tenant']}.grouping"
    read = full.call("POST", "/api/v1/keys", {"name": "dashboard", "scope": "read"})
    assert read.status == 201 and read.body["scope"] == {"kind": "read"} and read.body["key"].startswith("fwk_")
    reader = server.http(api_key=read.body["key"])
    assert reader.call("GET", "/api/v1/galleries/people").status == 200
    assert _identified(deployment, "faces/probe/obama1.jpg", reader) == {"obama"}  # reads, by POST
    for method, path, body in (("POST", "/api/v1/galleries", {"name": "x"}),
                               ("DELETE", "/api/v1/galleries/people", None), ("GET", "/api/v1/keys", None),
                               ("POST", "/api/v1/keys", {"scope": "full"})):
        refused = reader.call(method, path, body)
        assert refused.status == 403 and refused.body["code"] == "FORBIDDEN", (method, path)
    door = full.call("POST", "/api/v1/keys", {"name": "door", "scope": {"kind": "subscribe", "cameras": ["door"]}})
    assert door.status == 201 and door.body["scope"] == {"kind": "subscribe", "cameras": ["door"]}
    assert server.http(api_key=door.body["key"]).call("GET", "/api/v1/me").status == 403  # the broker only
    for bad in ({"scope": "admin"}, {"scope": {"kind": "subscribe"}}, {"scope": {"kind": "read", "cameras": ["a"]}},
                {"scope": {"kind": "subscribe", "cameras": ["../x"]}}):
        assert full.call("POST", "/api/v1/keys", bad).body["code"] == "BAD_PARAM", bad
    listed = full.call("GET", "/api/v1/keys").body["keys"]
    assert {k["name"] for k in listed} >= {"default", "dashboard", "door"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    other = server.http(api_key=deployment.other["api_key"])
    assert other.call("DELETE", f"/api/v1/keys/{read.body['id']}").status == 404  # not theirs
    assert read.body["id"] not in {k["id"] for k in other.call("GET", "/api/v1/keys").body["keys"]}
    rotated = full.call("POST", f"/api/v1/keys/{read.body['id']}/rotate")
    assert rotated.status == 201 and rotated.body["name"] == "dashboard" and rotated.body["scope"] == {"kind": "read"}
    assert reader.call("GET", "/api/v1/galleries").status == 401  # revoked on this node at once
    assert server.http(api_key=rotated.body["key"]).call("GET", "/api/v1/galleries").status == 200
    assert full.call("DELETE", f"/api/v1/keys/{rotated.body['id']}").status == 204
    assert server.http(api_key=rotated.body["key"]).call("GET", "/api/v1/galleries").status == 401
    revoked = {k["id"]: k["revoked"] for k in full.call("GET", "/api/v1/keys").body["keys"]}
    assert revoked[read.body["id"]] and revoked[rotated.body["id"]] and not revoked[door.body["id"]]


def test_a_new_keys_secret_is_not_kept_for_an_idempotency_key(deployment: Deployment) -> None:
    from .test_sightings import _database_holds  # every text and binary value of every table

    made = deployment.http.call("POST", "/api/v1/keys", {"name": "shown once"}, headers={"idempotency-key": "k-1"})
    assert made.status == 201
    rotated = deployment.http.call("POST", f"/api/v1/keys/{made.body['id']}/rotate",
                                   headers={"idempotency-key": "k-2"})
    assert rotated.status == 201
    server = deployment.server
    url = server.env.get("FACEWATCH_STORAGE__URL") or f"sqlite:///{server.data_dir / 'facewatch.db'}"
    for key in (made.body["key"], rotated.body["key"]):  # the store keeps hashes of secrets, never them
        assert _database_holds(url, key.encode()) == []


def test_login_refresh_and_expired_token(deployment: Deployment) -> None:
    server, tenant = deployment.server, deployment.tenant
    bad = server.http().call("POST", "/api/v1/login", {"client_id": tenant["client_id"], "client_secret": "nope"})
    assert bad.status == 401
    login = server.http().call("POST", "/api/v1/login", {"client_id": tenant["client_id"],
                                                         "client_secret": tenant["client_secret"]})
    assert login.status == 200 and login.body["token_type"] == "Bearer" and login.body["expires_in"] == 3600
    with_token = server.http(token=login.body["access_token"])
    assert [g["name"] for g in with_token.call("GET", "/api/v1/galleries").body["galleries"]] == ["people"]
    refreshed = server.http().call("POST", "/api/v1/token/refresh", {"refresh_token": login.body["refresh_token"]})
    assert refreshed.status == 200
    reused = server.http().call("POST", "/api/v1/token/refresh", {"refresh_token": login.body["refresh_token"]})
    assert reused.status == 401  # one use each
    # An expired token, signed with the real key: refused like a forged one.
    from repo.security import TokenSigner
    from repo.store import open_store

    store = open_store(server.env.get("FACEWATCH_STORAGE__URL") or f"sqlite:///{server.data_dir / 'facewatch.db'}")
    try:
        signer = TokenSigner(bytes.fromhex(store.setting("token_signing_key") or ""))
    finally:
        store.close()
    expired, _ = signer.issue(_tenant_id(server, "acme"), tenant["client_id"], -1)
    reply = server.http(token=expired).call("GET", "/api/v1/galleries")
    assert reply.status == 401 and reply.body["code"] == "AUTH_FAILED"


def test_a_stomp_connection_made_with_an_access_token_is_closed_when_the_token_expires(
        deployment: Deployment) -> None:
    from repo.security import TokenSigner
    from repo.store import open_store

    from .conftest import RawStomp

    server, tenant = deployment.server, deployment.tenant
    store = open_store(server.env.get("FACEWATCH_STORAGE__URL") or f"sqlite:///{server.data_dir / 'facewatch.db'}")
    try:
        signer = TokenSigner(bytes.fromhex(store.setting("token_signing_key") or ""))
    finally:
        store.close()
    tenant_id = _tenant_id(server, "acme")
    short, _ = signer.issue(tenant_id, tenant["client_id"], 2)
    long, _ = signer.issue(tenant_id, tenant["client_id"], 3600)
    peers = []
    for token in (short, long):
        peer = RawStomp(server.stomp_port, timeout_s=30)
        assert peer.connect("app", token).command == "CONNECTED"
        peer.send_frame("SUBSCRIBE", {"destination": f"/topic/tenant.{tenant_id}.repo", "id": "1", "receipt": "r"})
        assert peer.recv().command == "RECEIPT"
        peers.append(peer)
    # Closed within auth.revocation_check_s of the expiry (the frame's wait is the bound, not a sleep).
    closed = peers[0].recv(timeout_s=30)
    assert closed.command == "ERROR" and closed.headers["message"] == "access expired", closed
    peers[1].recv_none(wait_s=0.5)  # the unexpired one stays
    peers[1].send_frame("DISCONNECT", {"receipt": "bye"})
    assert peers[1].recv().command == "RECEIPT"
    again = RawStomp(server.stomp_port, timeout_s=10)
    assert again.connect("app", short).command == "ERROR"  # and the expired token connects no more
    for raw in (*peers, again):
        raw.close()


def _tenant_id(server: RepoServer, name: str) -> str:
    from repo.store import open_store

    store = open_store(server.env.get("FACEWATCH_STORAGE__URL") or f"sqlite:///{server.data_dir / 'facewatch.db'}")
    try:
        tenant_id = store.tenant_by_name(name)
    finally:
        store.close()
    assert tenant_id
    return tenant_id


def test_same_handlers_over_stomp(deployment: Deployment) -> None:
    server = deployment.server
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    try:
        key = {"x-api-key": deployment.tenant["api_key"]}
        listed = bus.request("/queue/facewatch.api", b"", {"method": "GET", "path": "/api/v1/galleries", **key})
        assert listed.status == 200 and [g["name"] for g in listed.json()["galleries"]] == ["people"]
        image = base64.b64encode(deployment.image("faces/probe/kit_with_rose.jpg")).decode()
        found = bus.request("/queue/facewatch.api", {"image": image, "galleries": "people"},
                            {"method": "POST", "path": "/api/v1/identify", **key}, timeout_s=30)
        assert found.status == 200
        assert ({f["matches"][0]["subject"] for f in found.json()["faces"] if f["matches"]}
                == {"kit_harington", "rose_leslie"})
        page = bus.request("/queue/facewatch.api", b"",
                           {"method": "GET", "path": "/api/v1/galleries/people/subjects?limit=2", **key})
        assert page.status == 200 and len(page.json()["subjects"]) == 2 and page.json()["total"] == 6
        denied = bus.request("/queue/facewatch.api", b"", {"method": "GET", "path": "/api/v1/galleries"})
        assert denied.status == 401 and denied.json()["code"] == "AUTH_FAILED"
        bad = bus.request("/queue/facewatch.api", b"{oops", {"method": "POST", "path": "/api/v1/galleries", **key})
        assert bad.status == 400 and bad.json()["code"] == "MALFORMED_JSON"
        nohdr = bus.request("/queue/facewatch.api", b"", {})
        assert nohdr.status == 400 and nohdr.json()["code"] == "BAD_PARAM"
    finally:
        bus.close()


def test_bulk_enrolment_from_a_json_list_over_stomp(deployment: Deployment) -> None:
    server, http = deployment.server, deployment.http
    assert http.call("POST", "/api/v1/galleries", {"name": "listed"}).status == 201
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    enrol = {"method": "POST", "path": "/api/v1/galleries/listed/enrol", "x-api-key": deployment.tenant["api_key"]}

    def encoded(person: str, n: int) -> str:
        photo = sorted((deployment.data / "faces" / "enroll" / person).iterdir())[n]
        return base64.b64encode(photo.read_bytes()).decode()

    try:
        bad_items: list[tuple[Any, str]] = [
            (["x"], "items[0]"), ([], "items"), ([{"subject": "..", "image": encoded("obama", 0)}], "dots"),
            ([{"subject": "obama", "image": "%%%"}], "base64"), ({"subject": "obama"}, "items")]
        for items, where in bad_items:
            refused = bus.request("/queue/facewatch.api", {"items": items}, enrol)
            assert refused.status == 400 and refused.json()["code"] == "BAD_PARAM", (where, refused.json())
            assert where in refused.json()["reason"]
        items = [{"subject": "obama", "image": encoded("obama", 0)}, {"subject": "obama", "image": encoded("obama", 1)},
                 {"subject": "biden", "image": encoded("biden", 0)}]
        accepted = bus.request("/queue/facewatch.api", {"items": items}, enrol, timeout_s=30)
        assert accepted.status == 202, accepted.json()
        job_id = accepted.json()["id"]
    finally:
        bus.close()
    job = _finished_job(http, job_id, 60)
    assert job["status"] == "done" and job["done"] == 3 and job["result"]["added"] == 3, job
    subjects = {s["id"]: s["faces"] for s in http.call("GET", "/api/v1/galleries/listed/subjects").body["subjects"]}
    assert subjects == {"obama": 2, "biden": 1}
    reply = http.call("POST", "/api/v1/identify", files={"file": ("p.jpg", deployment.image("faces/probe/obama1.jpg"))},
                      fields={"galleries": "listed"})
    assert {f["matches"][0]["subject"] for f in reply.body["faces"] if f["matches"]} == {"obama"}


def test_restart_keeps_everything(deployment: Deployment) -> None:
    server = deployment.server
    server.stop()
    server.start()
    listed = deployment.http.call("GET", "/api/v1/galleries/people/subjects")
    assert listed.body["total"] == 6
    assert _identified(deployment, "faces/probe/obama_and_biden.jpg") == {"obama", "biden"}


def test_openapi_document(deployment: Deployment) -> None:
    doc = deployment.server.http().call("GET", "/api/v1/openapi.json")
    assert doc.status == 200 and doc.body["openapi"].startswith("3.")
    assert "post" in doc.body["paths"]["/api/v1/identify"]
    assert doc.body["paths"]["/api/v1/login"]["post"]["security"] == []


def test_bulk_enrolment_job_with_progress_events(deployment: Deployment) -> None:
    import io
    import zipfile

    server, http = deployment.server, deployment.http
    assert http.call("POST", "/api/v1/galleries", {"name": "bulk"}).status == 201
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for person in ("obama", "biden", "rose_leslie"):
            for image in sorted((deployment.data / "faces" / "enroll" / person).iterdir()):
                archive.writestr(f"{person}/{image.name}", image.read_bytes())
        archive.writestr("biden/not-a-face.png", _blank_png())
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    events: list[dict[str, Any]] = []
    try:
        bus.subscribe("/topic/jobs.*", lambda m: events.append(m.json()), receipt=True)
        repo_events: list[dict[str, Any]] = []
        bus.subscribe("/topic/repo.events", lambda m: repo_events.append(m.json()), receipt=True)
        accepted = http.call("POST", "/api/v1/galleries/bulk/enrol", files={"file": ("people.zip", buf.getvalue())})
        assert accepted.status == 202 and accepted.body["total"] == 7
        job_id = accepted.body["id"]
        # The runner's last event comes after its progress events, and after the repo events of the faces
        # it added (one publisher, in order).
        eventually(lambda: any(e["job"] == job_id and e["status"] in ("done", "failed") for e in events),
                   timeout_s=120, what="the job's last event")
        job = http.call("GET", f"/api/v1/jobs/{job_id}").body
        assert job["status"] == "done" and job["done"] == 7
        assert job["result"]["added"] == 6
        assert [f["code"] for f in job["result"]["failed"]] == ["NO_FACE"]
        mine = [e for e in events if e["job"] == job_id]
        assert all(e["type"] == "job.progress" for e in mine)
        progress = [e["done"] for e in mine if e["status"] == "running"]
        assert progress == sorted(progress) and progress[-1] == 7 and len(progress) >= 3
        assert mine[-1]["status"] == "done"
        added = [e for e in repo_events if e["type"] == "face.added" and e["gallery"] == "bulk"]
        assert len(added) == 6 and all(len(base64.b64decode(e["embedding"])) == 512 * 4 for e in added)
    finally:
        bus.close()
    assert {s["id"] for s in http.call("GET", "/api/v1/galleries/bulk/subjects").body["subjects"]} == {
        "obama", "biden", "rose_leslie"}
    other = server.http(api_key=deployment.other["api_key"])
    assert other.call("GET", f"/api/v1/jobs/{job_id}").status == 404
    # The same folder enrolled again adds no duplicate faces: each photo already enrolled is skipped.
    again = http.call("POST", "/api/v1/galleries/bulk/enrol", files={"file": ("people.zip", buf.getvalue())})
    assert again.status == 202
    job = eventually(lambda: (j := http.call("GET", f"/api/v1/jobs/{again.body['id']}").body)["status"] == "done"
                     and j, timeout_s=120, what="the second job done")
    assert job["result"]["added"] == 0 and job["result"]["skipped"] == 6, job
    assert sum(s["faces"] for s in http.call("GET", "/api/v1/galleries/bulk/subjects").body["subjects"]) == 6
    bomb = http.call("POST", "/api/v1/galleries/bulk/enrol", files={"file": ("x.zip", b"PK\x03\x04 not really")})
    assert bomb.status == 400 and bomb.body["code"] == "BAD_PARAM"


def _blank_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (120, 120), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


def _lfw_job_under_way(dep: Deployment, gallery: str, *, people: int, done: int) -> str:
    """A bulk job enrolling the first LFW photo of ``people`` people into a new gallery, once ``done`` are done."""
    import io
    import zipfile

    assert dep.http.call("POST", "/api/v1/galleries", {"name": gallery}).status == 201
    lfw = dep.data / "pairs" / "lfw-view1" / "images"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:people]:
            first = sorted(person.iterdir())[0]
            archive.writestr(f"{person.name}/{first.name}", first.read_bytes())
    accepted = dep.http.call("POST", f"/api/v1/galleries/{gallery}/enrol", files={"file": ("lfw.zip", buf.getvalue())})
    assert accepted.status == 202
    job_id: str = accepted.body["id"]
    eventually(lambda: dep.http.call("GET", f"/api/v1/jobs/{job_id}").body["done"] >= done, timeout_s=60,
               interval_s=0.05, what=f"{done} items of the job done")
    return job_id


def test_accepted_job_survives_a_crash(deployment: Deployment) -> None:
    import signal

    server, http = deployment.server, deployment.http
    job_id = _lfw_job_under_way(deployment, "crashy", people=40, done=3)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)  # no shutdown of any kind
    server.proc.wait(timeout=30)
    server.proc = None
    server.start()
    job = _finished_job(http, job_id, 120)
    assert job["status"] == "done" and job["done"] == 40
    subjects = http.call("GET", "/api/v1/galleries/crashy/subjects?limit=100").body
    assert subjects["total"] == 40
    # Exactly once: an item redone after the kill finds its committed faces by their job item key.
    assert sum(s["faces"] for s in subjects["subjects"]) == job["result"]["added"]
    assert all(s["faces"] <= 1 for s in subjects["subjects"])


def test_a_running_job_can_be_cancelled(deployment: Deployment) -> None:
    http = deployment.http
    job_id = _lfw_job_under_way(deployment, "cancelled", people=300, done=2)
    other_tenant = deployment.server.http(api_key=deployment.other["api_key"])
    assert other_tenant.call("POST", f"/api/v1/jobs/{job_id}/cancel").status == 404
    cancelled = http.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled", cancelled.body
    # The runner stops after the items in hand; removing the job's spooled zip is its very last step.
    spooled = deployment.server.data_dir / "jobs" / f"{job_id}.zip"
    eventually(lambda: not spooled.exists(), timeout_s=60, what="the job's runner to end")
    job = http.call("GET", f"/api/v1/jobs/{job_id}").body
    assert job["status"] == "cancelled" and job["done"] < 300  # and with no runner, no further progress
    again = http.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    assert again.status == 409 and again.body["code"] == "CONFLICT"
    enrolled = http.call("GET", "/api/v1/galleries/cancelled/subjects?limit=500").body["total"]
    assert 2 <= enrolled < 300  # what was done stays done
    assert not (deployment.server.data_dir / "jobs" / f"{job_id}.zip").exists()


def test_identify_through_the_sign_code_prescan(tmp_path: Path, models_dir: Path, shared_data: Path) -> None:
    """The large-gallery search path, end to end: every search goes through the sign-code cut,
    which keeps a quarter of the 22 enrolled faces, and every probe still finds its people."""
    server = RepoServer(tmp_path, models_dir, None, FACEWATCH_REPO__SEARCH__EXACT_MAX_FACES="0",
                        FACEWATCH_REPO__SEARCH__CANDIDATE_FRACTION="0.25", FACEWATCH_REPO__SEARCH__MIN_CANDIDATES="1")
    tenant = server.create_tenant("acme")
    server.start()
    try:
        dep = Deployment(server, tenant, tenant, shared_data)
        _enrol_everyone(dep)
        for probe, expected in PROBES:
            assert _identified(dep, probe) == expected, probe
    finally:
        server.stop()


def _bystander_photo(dep: Deployment) -> bytes:
    """Kit Harington in the middle of the frame, Obama larger but cut by its left edge."""
    canvas = np.full((600, 900, 3), 90, np.uint8)

    def crop(relative: str, rows: slice, cols: slice, side: int) -> np.ndarray:
        image = np.asarray(cv2.imdecode(np.frombuffer(dep.image(relative), np.uint8), cv2.IMREAD_COLOR), np.uint8)
        return np.asarray(cv2.resize(image[rows, cols], (side, side)), np.uint8)

    bystander = crop("faces/probe/obama1.jpg", slice(60, 720), slice(390, 1020), 330)
    subject = crop("faces/probe/johnsnow_test1.jpg", slice(80, 430), slice(180, 520), 260)
    canvas[150:480, 0:270] = bystander[:, 60:]  # cut by the frame's edge
    canvas[170:430, 320:580] = subject
    ok, data = cv2.imencode(".jpg", canvas)
    assert ok
    return data.tobytes()


def test_single_face_operations_take_the_prominent_face_not_the_largest(deployment: Deployment) -> None:
    http, photo = deployment.http, _bystander_photo(deployment)
    detected = http.call("POST", "/api/v1/detect", files={"file": ("p.jpg", photo)})
    boxes = [f["box"] for f in detected.body["faces"]]
    assert len(boxes) == 2
    side = [min(b["x_max"] - b["x_min"], b["y_max"] - b["y_min"]) for b in boxes]
    assert side[1] > side[0], "premise: the bystander (listed second) has the larger face"
    verify = {"gallery": "people", "subject": "kit_harington"}
    chosen = http.call("POST", "/api/v1/verify", files={"image1": ("p.jpg", photo)}, fields=verify)
    assert chosen.status == 200 and chosen.body["verified"] is True
    other = http.call("POST", "/api/v1/verify", files={"image1": ("p.jpg", photo)},
                      fields={**verify, "face_index": "1"})
    assert other.status == 200 and other.body["verified"] is False
    b = boxes[1]
    by_box = http.call("POST", "/api/v1/verify", {"image1": base64.b64encode(photo).decode(), "gallery": "people",
                                                  "subject": "obama", "face_box": [b["x_min"], b["y_min"],
                                                                                   b["x_max"], b["y_max"]]})
    assert by_box.status == 200 and by_box.body["verified"] is True
    bad = http.call("POST", "/api/v1/verify", files={"image1": ("p.jpg", photo)}, fields={**verify, "face_index": "7"})
    # Well formed, but no such face in the image: 422 like every "no face there".
    assert bad.status == 422 and bad.body["code"] == "NO_FACE" and bad.body["param"] == "face_index"


def test_enrolment_of_comparable_faces_asks_which_one(deployment: Deployment) -> None:
    http = deployment.http
    assert http.call("POST", "/api/v1/galleries/people/subjects", {"id": "pair", "name": "Pair"}).status == 201
    two = deployment.image("faces/probe/two_people.jpg")
    refused = http.call("POST", "/api/v1/galleries/people/subjects/pair/faces", files={"file": ("t.jpg", two)})
    assert refused.status == 409 and refused.body["code"] == "CONFLICT" and refused.body["param"] == "face_index"
    chosen = http.call("POST", "/api/v1/galleries/people/subjects/pair/faces", files={"file": ("t.jpg", two)},
                       fields={"face_index": "0"})
    assert chosen.status == 201 and len(chosen.body["faces"]) == 1
    assert http.call("DELETE", "/api/v1/galleries/people/subjects/pair").status == 204


def test_a_correction_stops_a_stranger_being_named_again_rest_and_stomp(deployment: Deployment) -> None:
    """Biden, not enrolled, is named as the only subject at a threshold that accepts anyone; after one
    "this is not Obama" (another photo of him, over STOMP), he is not named Obama again (REST), while
    Obama himself still is."""
    http = deployment.http
    assert http.call("POST", "/api/v1/galleries", {"name": "feedback"}).status == 201
    assert http.call("POST", "/api/v1/galleries/feedback/subjects", {"id": "obama", "name": "Obama"}).status == 201
    assert http.call("POST", "/api/v1/galleries/feedback/subjects/obama/faces",
                     files={"file": ("o.jpg", deployment.image("faces/enroll/obama/obama.jpg"))}).status == 201
    anyone = {"galleries": "feedback", "threshold": "-1"}

    def named(relative: str) -> dict[str, Any]:
        reply = http.call("POST", "/api/v1/identify", files={"file": ("p.jpg", deployment.image(relative))},
                          fields=anyone)
        assert reply.status == 200, reply.body
        face: dict[str, Any] = reply.body["faces"][0]
        return face

    before = named("faces/enroll/biden/biden.jpg")
    assert [m["subject"] for m in before["matches"]] == ["obama"]
    server = deployment.server
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    try:
        photo = base64.b64encode(deployment.image("faces/enroll/biden/biden2.jpg")).decode()
        stored = bus.request("/queue/facewatch.api", {"image": photo, "source": "event stage/4"},
                             {"method": "POST", "path": "/api/v1/galleries/feedback/subjects/obama/negatives",
                              "x-api-key": deployment.tenant["api_key"]}, timeout_s=30)
        assert stored.status == 201, stored.json()
        negative = stored.json()
        assert negative["subject"] == "obama" and negative["source"] == "event stage/4" and negative["similarity"] < 0.3
        other = bus.request("/queue/facewatch.api", b"",
                            {"method": "GET", "path": "/api/v1/galleries/feedback/subjects/obama/negatives",
                             "x-api-key": deployment.other["api_key"]})
        assert other.status == 404  # another tenant sees no such gallery
    finally:
        bus.close()
    after = named("faces/enroll/biden/biden.jpg")
    assert after["matches"] == [] and after["decision"]["reason"] == "refuted"
    assert [m["subject"] for m in named("faces/probe/obama1.jpg")["matches"]] == ["obama"]
    listed = http.call("GET", "/api/v1/galleries/feedback/subjects/obama/negatives").body["negatives"]
    assert [n["id"] for n in listed] == [negative["id"]]
    assert http.call("DELETE", f"/api/v1/negatives/{negative['id']}").status == 204
    assert [m["subject"] for m in named("faces/enroll/biden/biden.jpg")["matches"]] == ["obama"]
    assert http.call("DELETE", f"/api/v1/negatives/{negative['id']}").status == 404
    assert http.call("DELETE", "/api/v1/galleries/feedback").status == 204


def _raw(dep: Deployment, method: str, path: str, body: bytes = b"", content_type: str | None = None,
         key: bool = True) -> tuple[int, dict[str, str], Any]:
    """One request with exactly these bytes and headers; (status, headers, JSON body or None)."""
    connection = HTTPConnection("127.0.0.1", dep.server.port, timeout=30)
    headers = {"x-api-key": dep.tenant["api_key"]} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    connection.request(method, path, body=body, headers=headers)
    reply = connection.getresponse()
    data = reply.read()
    connection.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, parsed


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "code"), [
    ("POST", "/api/v1/detect", b"x", "multipart/form-data", 400, "BAD_PARAM"),  # no boundary
    ("POST", "/api/v1/detect", b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nabc',
     "multipart/form-data; boundary=b", 400, "BAD_PARAM"),  # a part never terminated
    ("POST", "/api/v1/detect", b"--" + b"a" * 80 + b"\r\n", "multipart/form-data; boundary=" + "a" * 80, 400,
     "BAD_PARAM"),  # a boundary over 70 characters
    ("POST", "/api/v1/galleries", b"[" * 5000 + b"]" * 5000, "application/json", 400, "MALFORMED_JSON"),
    ("GET", "/nowhere", b"", None, 404, "NOT_FOUND"),
    ("GET", "/api/v1/galleries/a%0d%0ab", b"", None, 404, "NOT_FOUND"),
    ("GET", "/api/v1/galleries/" + "a" * 10_000, b"", None, 404, "NOT_FOUND"),  # over aiohttp's own 8190
    ("DELETE", "/api/v1/galleries", b"", None, 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/stomp", b"", None, 405, "METHOD_NOT_ALLOWED"),
])
def test_every_error_is_the_documented_json(deployment: Deployment, method: str, path: str, body: bytes,
                                            content_type: str | None, status: int, code: str) -> None:
    for key in (True, False):  # with credentials and without: bad framing is answered the same way
        got, headers, reply = _raw(deployment, method, path, body, content_type, key)
        if not key and got == 401:
            continue  # refused before the body is read: also an answer in the documented shape
        assert (got, reply and reply.get("code")) == (status, code), (key, reply)
        assert isinstance(reply.get("reason"), str) and headers["content-type"].startswith("application/json")
        if status == 405:
            assert headers.get("allow"), headers


def test_json_nested_too_deep_over_stomp(deployment: Deployment) -> None:
    server = deployment.server
    creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
    bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
    bus.connect()
    try:
        reply = bus.request("/queue/facewatch.api", b"[" * 5000 + b"]" * 5000,
                            {"method": "POST", "path": "/api/v1/galleries", "content-type": "application/json",
                             "x-api-key": deployment.tenant["api_key"]})
        assert reply.status == 400 and reply.json()["code"] == "MALFORMED_JSON"
    finally:
        bus.close()


def test_credentials_are_checked_before_a_body_is_read(deployment: Deployment) -> None:
    # A broken multipart body without credentials: refused for the credentials, so never parsed.
    status, _, reply = _raw(deployment, "POST", "/api/v1/galleries/people/subjects/obama/faces", b"x" * 100_000,
                            "multipart/form-data; boundary=b", key=False)
    assert status == 401 and reply["code"] == "AUTH_FAILED"
    # Routes open to anyone take small bodies only.
    status, _, reply = _raw(deployment, "POST", "/api/v1/login",
                            json.dumps({"client_id": "x", "client_secret": "y" * 100_000}).encode(),
                            "application/json", key=False)
    assert status == 413 and reply["code"] == "PAYLOAD_TOO_LARGE"
    status, _, reply = _raw(deployment, "POST", "/api/v1/login", b'{"client_id": "x", "client_secret": "y"}',
                            "application/json", key=False)
    assert status == 401 and reply["code"] == "AUTH_FAILED"
