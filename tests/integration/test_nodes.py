"""Several nodes, one system: two real `facewatch serve` processes on one PostgreSQL database, on
RabbitMQ and on the embedded broker of one of them (the other connects to it).

Each node's in-memory state (repo indexes, group index) follows the changes made through the
other, lost events included; STOMP requests survive a node being stopped; a redelivered write is
applied once; a camera can only be given to a node that exists.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.client import BrokerAddress, BusClient, Reply
from repo.store import FaceRecord, open_store
from tests.waiting import eventually

from .cluster import API, RawRequests, drop_rabbit_vhost, rabbit_vhost
from .conftest import RABBIT_STOMP_PORT
from .repo_server import Http, RepoServer
from .test_repo_api import PG, _drop_database, _postgres_database

pytestmark = [pytest.mark.models, pytest.mark.data]

# The nodes answer for changes made through the other within one event's delivery; a lost event is
# found by the next one after GAP_GRACE_S, or by alpha's comparison with the database every RECONCILE_S
# (beta never compares: what it learns of lost events, it learns from the next event).
GAP_GRACE_S, RECONCILE_S = "0.3", "1.0"
SYNC_TIMEOUT_S = 30


@dataclass
class Cluster:
    alpha: RepoServer
    beta: RepoServer
    tenant: dict[str, str]
    database_url: str
    address: BrokerAddress  # for the test's own STOMP clients
    data: Path

    def http(self, node: RepoServer) -> Http:
        return node.http(api_key=self.tenant["api_key"])

    def image(self, relative: str) -> bytes:
        return (self.data / relative).read_bytes()


@pytest.fixture(scope="module", params=["rabbitmq", "embedded"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
            shared_data: Path) -> Iterator[Cluster]:
    database = _postgres_database()
    assert database is not None
    url = f"{PG}/{database}"
    common = {"FACEWATCH_RUNTIME__ANALYSIS_PROCESSES": "1", "FACEWATCH_SYNC__GAP_GRACE_S": GAP_GRACE_S,
              "FACEWATCH_API__STOMP_PREFETCH": "4"}
    vhost = None
    if request.param == "rabbitmq":
        request.getfixturevalue("rabbitmq")
        vhost = rabbit_vhost()
        common["FACEWATCH_BROKER__URL"] = f"stomp://guest:guest@127.0.0.1:{RABBIT_STOMP_PORT}/{vhost or ''}"
    root = tmp_path_factory.mktemp(f"nodes-{request.param}")
    alpha = RepoServer(root / "alpha", models_dir, url, FACEWATCH_WATCHER__NODE="alpha",
                       FACEWATCH_SYNC__RECONCILE_INTERVAL_S=RECONCILE_S, **common)
    tenant = alpha.create_tenant("acme")
    alpha.start()
    if request.param == "embedded":
        creds = json.loads((alpha.data_dir / "broker-credentials.json").read_text())
        address = BrokerAddress("127.0.0.1", alpha.stomp_port, creds["login"], creds["passcode"])
        common["FACEWATCH_BROKER__URL"] = f"stomp://{creds['login']}:{creds['passcode']}@127.0.0.1:{alpha.stomp_port}/"
    else:
        address = BrokerAddress("127.0.0.1", RABBIT_STOMP_PORT, "guest", "guest", vhost or "/")
    beta = RepoServer(root / "beta", models_dir, url, FACEWATCH_WATCHER__NODE="beta",
                      FACEWATCH_SYNC__RECONCILE_INTERVAL_S="3600", **common)
    try:
        beta.start()
        yield Cluster(alpha, beta, tenant, url, address, shared_data)
    finally:
        beta.stop()
        alpha.stop()
        _drop_database(database)
        drop_rabbit_vhost(vhost)


def _photo(cluster: Cluster, person: str, n: int = 0) -> bytes:
    return sorted((cluster.data / "faces" / "enroll" / person).iterdir())[n].read_bytes()


def _make_gallery(cluster: Cluster, node: RepoServer, gallery: str) -> None:
    http = cluster.http(node)
    if http.call("GET", f"/api/v1/galleries/{gallery}").status == 404:
        assert http.call("POST", "/api/v1/galleries", {"name": gallery}).status == 201


def _enrol(cluster: Cluster, node: RepoServer, gallery: str, person: str, n: int = 0) -> str:
    http = cluster.http(node)
    _make_gallery(cluster, node, gallery)
    if http.call("GET", f"/api/v1/galleries/{gallery}/subjects/{person}").status == 404:
        assert http.call("POST", f"/api/v1/galleries/{gallery}/subjects", {"id": person, "name": person}).status == 201
    added = http.call("POST", f"/api/v1/galleries/{gallery}/subjects/{person}/faces",
                      files={"file": ("face.jpg", _photo(cluster, person, n))})
    assert added.status == 201, added.body
    face_id: str = added.body["faces"][0]["id"]
    return face_id


def _gallery(cluster: Cluster, node: RepoServer, gallery: str = "people") -> dict[str, Any]:
    reply = cluster.http(node).call("GET", f"/api/v1/galleries/{gallery}")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def _caught_up(cluster: Cluster, node: RepoServer, version: int, gallery: str = "people") -> None:
    """Wait for the fact: ``node``'s index holds ``version`` of the gallery."""
    eventually(lambda: _gallery(cluster, node, gallery)["indexed_version"] >= version, timeout_s=SYNC_TIMEOUT_S,
               interval_s=0.1, what=f"{node.env['FACEWATCH_WATCHER__NODE']} to index version {version} of {gallery}")


def _identified(cluster: Cluster, node: RepoServer, probe: str) -> set[str]:
    reply = cluster.http(node).call("POST", "/api/v1/identify", files={"file": ("p.jpg", cluster.image(probe))},
                                    fields={"galleries": "people"})
    assert reply.status == 200, reply.body
    return {f["matches"][0]["subject"] for f in reply.body["faces"] if f["matches"]}


def test_a_face_enrolled_on_one_node_is_identified_on_the_other(cluster: Cluster) -> None:
    _enrol(cluster, cluster.alpha, "people", "obama")
    version = _gallery(cluster, cluster.alpha)["version"]
    _caught_up(cluster, cluster.beta, version)
    assert _identified(cluster, cluster.beta, "faces/probe/obama1.jpg") == {"obama"}
    assert _gallery(cluster, cluster.beta)["faces"] == 1


def test_a_face_deleted_on_one_node_is_no_longer_identified_on_the_other(cluster: Cluster) -> None:
    face = _enrol(cluster, cluster.alpha, "people", "biden")
    _caught_up(cluster, cluster.beta, _gallery(cluster, cluster.alpha)["version"])
    assert _identified(cluster, cluster.alpha, "faces/probe/obama_and_biden.jpg") == {"obama", "biden"}
    assert cluster.http(cluster.beta).call("DELETE", f"/api/v1/faces/{face}").status == 204
    _caught_up(cluster, cluster.alpha, _gallery(cluster, cluster.beta)["version"])
    assert _identified(cluster, cluster.alpha, "faces/probe/obama_and_biden.jpg") == {"obama"}


def _copy_face_behind_the_nodes_backs(cluster: Cluster, person: str) -> str:
    """``person``'s face in "people", written straight to the database: no event announces it (as if its
    event was lost). The embedding comes from an enrolment into a scratch gallery."""
    scratch = _enrol(cluster, cluster.alpha, "scratch", person)
    _make_gallery(cluster, cluster.alpha, "people")
    store = open_store(cluster.database_url)
    try:
        tenant = store.tenant_by_name(cluster.tenant["tenant"])
        assert tenant is not None
        record, _ = store.face(tenant, scratch)
        people = store.gallery(tenant, "people")
        subject = store.create_subject(people.id, person, person, {})
        copy = FaceRecord(uuid.uuid4().hex, subject.pk, people.id, record.box, record.landmarks, record.det_score,
                          record.quality, record.embedding, record.model_id, record.photo_hash, None, record.created_at)
        store.add_faces([copy], [None])
    finally:
        store.close()
    return copy.id


def test_a_change_whose_event_was_lost_is_found_by_the_next_event(cluster: Cluster) -> None:
    _copy_face_behind_the_nodes_backs(cluster, "rose_leslie")
    lost = _gallery(cluster, cluster.alpha)["version"]  # the database's: beta has no event of it
    assert _gallery(cluster, cluster.beta)["indexed_version"] < lost
    _enrol(cluster, cluster.alpha, "people", "kit_harington")  # its event reveals the gap to beta
    _caught_up(cluster, cluster.beta, lost + 1)
    assert _identified(cluster, cluster.beta, "faces/probe/kit_with_rose.jpg") == {"kit_harington", "rose_leslie"}


def test_changes_whose_events_were_all_lost_are_reconciled(cluster: Cluster) -> None:
    copy = _copy_face_behind_the_nodes_backs(cluster, "lin_manuel_miranda")
    store = open_store(cluster.database_url)
    try:
        store.delete_face(copy)  # no event for either change: only comparing with the database finds them
        tenant = store.tenant_by_name(cluster.tenant["tenant"])
        assert tenant is not None
        version = store.gallery(tenant, "people").version
    finally:
        store.close()
    _caught_up(cluster, cluster.alpha, version)
    assert _gallery(cluster, cluster.alpha)["indexed_version"] == version


def test_the_group_index_follows_the_groups_made_on_the_other_node(cluster: Cluster) -> None:
    alpha, beta = cluster.http(cluster.alpha), cluster.http(cluster.beta)
    made = alpha.call("POST", "/api/v1/groups/images", files={"file": ("a.jpg", _photo(cluster, "obama"))})
    assert made.status == 200 and made.body["faces"][0]["new_group"], made.body
    version = alpha.call("GET", "/api/v1/groups").body["version"]
    eventually(lambda: beta.call("GET", "/api/v1/groups").body["indexed_version"] >= version,
               timeout_s=SYNC_TIMEOUT_S, interval_s=0.1, what="beta to index the group alpha made")
    again = beta.call("POST", "/api/v1/groups/images", files={"file": ("b.jpg", _photo(cluster, "obama", 1))})
    assert again.status == 200, again.body
    assert again.body["faces"][0]["group"] == made.body["faces"][0]["group"]  # joined it, not a new group


def _bus(cluster: Cluster) -> BusClient:
    bus = BusClient(cluster.address)
    bus.connect()
    return bus


def test_a_redelivered_write_is_applied_once(cluster: Cluster) -> None:
    http = cluster.http(cluster.alpha)
    _make_gallery(cluster, cluster.alpha, "idempotent")
    assert http.call("POST", "/api/v1/galleries/idempotent/subjects", {"id": "once", "name": "Once"}).status == 201
    path = "/api/v1/galleries/idempotent/subjects/once/faces"
    body = {"file": base64.b64encode(_photo(cluster, "obama", 1)).decode()}
    key = cluster.tenant["api_key"]
    raw = RawRequests(cluster.address)
    try:
        # The same message twice, as a broker redelivers it (a node died before acknowledging it):
        # whichever nodes take them, the face is enrolled once, and both answers name it.
        raw.send("same", "POST", path, body, key)
        raw.send("same", "POST", path, body, key)
        # A client's retry with its own key, at once to both nodes.
        raw.send("retry-1", "POST", path, body, key, **{"idempotency-key": "enrol-once"})
        raw.send("retry-2", "POST", path, body, key, **{"idempotency-key": "enrol-once"})
        with raw.cond:
            assert raw.cond.wait_for(lambda: len(raw.replies.get("same", [])) == 2, 120), raw.replies
        replies = raw.wait(["same", "retry-1", "retry-2"])
    finally:
        raw.close()
    same = [json.loads(f.body) for f in replies["same"]]
    retried = [json.loads(f.body) for f in replies["retry-1"] + replies["retry-2"]]
    assert {f.headers["status"] for f in replies["same"] + replies["retry-1"] + replies["retry-2"]} == {"201"}
    assert same[0] == same[1] and retried[0] == retried[1] and same[0] != retried[0]
    # The same key over REST, on the other node: the stored answer again; another body under it: refused.
    on_beta = cluster.http(cluster.beta)
    again = on_beta.call("POST", path, {"file": body["file"]}, headers={"Idempotency-Key": "enrol-once"})
    assert again.status == 201 and again.body == retried[0]
    another = {"file": base64.b64encode(_photo(cluster, "obama", 0)).decode()}
    other = on_beta.call("POST", path, another, headers={"Idempotency-Key": "enrol-once"})
    assert other.status == 409 and other.body["param"] == "idempotency-key"
    faces = http.call("GET", f"{path}").body["faces"]
    assert sorted(f["id"] for f in faces) == sorted([same[0]["faces"][0]["id"], retried[0]["faces"][0]["id"]])


def test_a_camera_for_a_node_that_does_not_exist_is_refused(cluster: Cluster) -> None:
    bus = _bus(cluster)
    key = cluster.tenant["api_key"]

    def call(method: str, path: str, body: Any = b"") -> Reply:
        return bus.request(API, body, {"method": method, "path": path, "x-api-key": key}, timeout_s=30)

    try:
        camera = {"id": "door", "url": "rtsp://cam.example/door", "enabled": False}
        refused = call("POST", "/api/v1/cameras", {**camera, "node": "gamma"})
        assert refused.status == 400 and refused.json()["param"] == "node", refused.json()
        assert "gamma" in refused.json()["reason"]
        assert call("GET", "/api/v1/cameras").json()["cameras"] == []
        accepted = call("POST", "/api/v1/cameras", {**camera, "node": "beta"})
        assert accepted.status == 201 and accepted.json()["node"] == "beta", accepted.json()
        assert {n["name"] for n in call("GET", "/api/v1/nodes").json()["nodes"]} == {"alpha", "beta"}
        assert call("DELETE", "/api/v1/cameras/door").status == 204
    finally:
        bus.close()


def test_a_stopped_node_answers_the_requests_in_hand_and_leaves_the_rest(cluster: Cluster) -> None:
    """SIGTERM to a node while STOMP requests are in flight: each request gets exactly one reply, from
    the stopping node (those in hand) or from the other (those it had not started)."""
    probe = {"file": base64.b64encode(cluster.image("faces/probe/obama1.jpg")).decode()}
    key = cluster.tenant["api_key"]
    raw = RawRequests(cluster.address)
    beta = cluster.beta
    assert beta.proc is not None
    try:
        correlations = [f"detect-{i}" for i in range(24)]
        for correlation in correlations:
            raw.send(correlation, "POST", "/api/v1/detect", probe, key)
        with raw.cond:  # beta is answering: it holds more in hand (its prefetch), the queue has more still
            assert raw.cond.wait_for(lambda: any(f.headers.get("node") == "beta"
                                                 for fs in raw.replies.values() for f in fs), 120)
        os.kill(beta.proc.pid, signal.SIGTERM)
        assert beta.proc.wait(timeout=60) == 0
        beta.proc = None
        replies = raw.wait(correlations)
        # A last request, answered after everything the broker held: a duplicate would have come first.
        raw.send("last", "POST", "/api/v1/detect", probe, key)
        raw.wait(["last"])
        replies = {c: list(raw.replies[c]) for c in correlations}
    finally:
        raw.close()
    assert {c: len(fs) for c, fs in replies.items() if len(fs) != 1} == {}
    assert {f.headers["status"] for fs in replies.values() for f in fs} == {"200"}
    assert all(len(json.loads(fs[0].body)["faces"]) == 1 for fs in replies.values())  # answered in full
    log = beta.log.read_text()
    assert "request(s) in hand before stopping" in log  # it was stopped with requests in hand, and answered them
    assert "cannot schedule new futures" not in log
