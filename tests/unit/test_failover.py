"""Camera leases and failover, on a real SQLite database with a clock the test moves: leases are
claimed once, renewed by their owner only, taken over when they expire (node_down naming the dead
node), handed back to a preferred node that returns, released at a clean stop and on an operator's
stop, which nobody takes over."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.errors import BadParam
from events import CameraStatus
from repo.store import RepoStore, open_store
from watcher.cameras import Camera, CameraSettings
from watcher.failover import CONTROL_TOPIC, NODE_DOWN, LeaseKeeper, LeaseOptions
from watcher.leases import CameraLeases, LeaseGrant
from watcher.nodes import NodeInfo, NodeRegistry
from watcher.placement import assign, hand_back, live_nodes
from watcher.registry import CameraRegistry

TTL = 6.0


def _camera(camera_id: str, node: str | None, enabled: bool = True) -> Camera:
    return Camera(camera_id, "t", CameraSettings(url="rtsp://cam.local/s"), enabled, 0.0, 0.0, node)


# -- placement (pure) ---------------------------------------------------------------------
def test_live_nodes_are_those_heard_from_within_the_ttl_that_have_not_left() -> None:
    nodes = [NodeInfo("a", "h", 1, 0, 100.0), NodeInfo("b", "h", 2, 0, 94.0), NodeInfo("c", "h", 3, 0, 99.0, 99.5)]
    assert live_nodes(nodes, 100.0, TTL) == {"a"}  # b's heartbeat is exactly a lease old: its leases expire now
    assert live_nodes(nodes, 99.9, TTL) == {"a", "b"}


def test_a_camera_goes_to_its_preferred_node_when_alive_else_the_least_loaded() -> None:
    cameras = [_camera("c1", "dead"), _camera("c2", "dead"), _camera("c3", "b"), _camera("c4", None)]
    plan = assign(cameras, {"a", "b"}, {"a": 1})
    assert plan["c3"] == "b"  # preferred and alive
    # b has c3 now, a had one already: the orphans alternate, least loaded first (ties by name).
    assert sorted(plan.values()).count("a") == 2 and sorted(plan.values()).count("b") == 2
    assert assign(cameras, set(), {}) == {}
    assert hand_back(_camera("c", "b"), "a", {"a", "b"}) and not hand_back(_camera("c", "b"), "a", {"a"})
    assert not hand_back(_camera("c", None), "a", {"a", "b"})


# -- leases (SQL) -------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'repo.db'}")
    CameraRegistry(store)  # the watcher's tables
    yield store
    store.close()


def test_a_lease_is_claimed_once_renewed_by_its_owner_and_taken_over_when_it_expires(store: RepoStore) -> None:
    leases = CameraLeases(store)
    first = leases.claim("door", "a", TTL, now=100.0)
    assert first is not None and first.lease.epoch == 1 and first.taken_from() is None
    assert leases.claim("door", "b", TTL, now=105.0) is None  # a holds it
    assert leases.renew("a", {"door": 1}, TTL, now=105.0) == {"door": 111.0}
    assert leases.claim("door", "b", TTL, now=110.0) is None
    taken = leases.claim("door", "b", TTL, now=111.0)  # a did not renew in time
    assert taken is not None and taken.lease.epoch == 2 and taken.taken_from() == "a"
    assert leases.renew("a", {"door": 1}, TTL, now=112.0) == {}  # the stale owner is refused
    leases.release("a", {"door": 1})  # nor can it give away what it no longer holds
    current = leases.get("door")
    assert current is not None and (current.owner, current.epoch) == ("b", 2)
    leases.release("b", {"door": 2})
    again = leases.claim("door", "a", TTL, now=113.0)  # released: no node is down
    assert again is not None and again.lease.epoch == 3 and again.taken_from() is None
    restarted = leases.claim("door", "a", TTL, now=114.0)  # a restarted: its own lease, the next epoch
    assert restarted is not None and restarted.lease.epoch == 4 and restarted.taken_from() is None


# -- the keeper: two nodes on one database ------------------------------------------------
class FakeWorkers:
    """The supervisor as the keeper sees it: which cameras run, under which lease."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[Camera, LeaseGrant | None]] = {}
        self.stopped: list[tuple[str, str | None]] = []

    def start(self, camera: Camera, lease: LeaseGrant | None = None) -> None:
        self.running[camera.id] = (camera, lease)

    def stop(self, camera_id: str, reason: str | None = None) -> bool:
        self.stopped.append((camera_id, reason))
        return self.running.pop(camera_id, None) is not None

    def close(self, reason: str | None = None) -> list[str]:
        ids = list(self.running)
        for camera_id in ids:
            self.stop(camera_id, reason)
        return ids

    def camera(self, camera_id: str) -> Camera | None:
        entry = self.running.get(camera_id)
        return None if entry is None else entry[0]

    def epoch(self, camera_id: str) -> int | None:
        grant = self.running[camera_id][1] if camera_id in self.running else None
        return None if grant is None else grant.epoch


class SlowToStop(FakeWorkers):
    """Workers that take a while to stop: ``meanwhile`` runs while they do."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.meanwhile = meanwhile

    def close(self, reason: str | None = None) -> list[str]:
        self.meanwhile()
        return super().close(reason)


class Node:
    def __init__(self, name: str, store: RepoStore, clock: list[float], workers: FakeWorkers | None = None) -> None:
        self.name = name
        self.workers = workers or FakeWorkers()
        self.published: list[tuple[str, Any]] = []
        self.nodes = NodeRegistry(store)
        self.nodes.announce(name, "host", os.getpid())
        self.nodes.seen(name, clock[0])
        self.keeper = LeaseKeeper(name, CameraRegistry(store), CameraLeases(store), self.nodes, self.workers,
                                  lambda topic, body: self.published.append((topic, body)), self._check,
                                  LeaseOptions(TTL), clock=lambda: clock[0])

    @staticmethod
    def _check(camera: Camera) -> None:
        if "forbidden" in camera.settings.url:
            raise BadParam("not here", "url")

    def statuses(self) -> list[CameraStatus]:
        found: list[CameraStatus] = []
        for topic, body in self.published:
            if topic.startswith("/topic/watcher."):
                assert isinstance(body, CameraStatus), body  # a camera's topic carries its events
                found.append(body)
        return found


def test_a_dead_nodes_camera_is_taken_over_then_handed_back_when_it_returns(store: RepoStore) -> None:
    clock = [1000.0]
    registry = CameraRegistry(store)
    tenant = store.create_tenant("t")
    alpha, beta = Node("alpha", store, clock), Node("beta", store, clock)
    registry.add(tenant, "door", CameraSettings(url="rtsp://cam.local/door"), True, 16, "beta")
    registry.add(tenant, "hall", CameraSettings(url="rtsp://cam.local/hall"), True, 16, "alpha")
    assert alpha.keeper.tick() == 1 and beta.keeper.tick() == 1  # each its own: preferences honoured
    assert set(alpha.workers.running) == {"hall"} and set(beta.workers.running) == {"door"}
    assert beta.workers.epoch("door") == 1

    clock[0] += TTL / 3
    alpha.keeper.tick()
    beta.keeper.tick()
    clock[0] += TTL  # beta is silent for a whole lease (killed, hung, cut off from the database)
    assert alpha.keeper.tick() == 1
    assert set(alpha.workers.running) == {"hall", "door"} and alpha.workers.epoch("door") == 2
    down = [e for e in alpha.statuses() if e.camera == "door"]
    assert [(e.state, e.node, e.taken_over_by, e.lease) for e in down] == [(NODE_DOWN, "beta", "alpha", 2)]
    assert (down[0].run, down[0].seq) == ("", 0)  # not a worker's own event

    beta.keeper.tick()  # beta wakes up: its renewal is refused, its worker stops, it claims nothing yet
    assert beta.workers.running == {} and ("door", None) in beta.workers.stopped
    clock[0] += TTL / 3
    alpha.keeper.tick()  # beta is alive again and door prefers it: alpha hands it back
    assert set(alpha.workers.running) == {"hall"}
    assert ("door", "moved: its preferred node beta is back") in alpha.workers.stopped
    assert (CONTROL_TOPIC, {"camera": "door", "from": "alpha"}) in alpha.published
    beta.keeper.reconcile("door")  # the control message
    assert beta.workers.epoch("door") == 3
    assert [e.state for e in alpha.statuses()] == [NODE_DOWN]  # released, not expired: no node_down


def test_an_operator_stop_is_not_taken_over_and_a_clean_stop_hands_cameras_over(store: RepoStore) -> None:
    clock = [1000.0]
    registry = CameraRegistry(store)
    tenant = store.create_tenant("t")
    alpha, beta = Node("alpha", store, clock), Node("beta", store, clock)
    door = registry.add(tenant, "door", CameraSettings(url="rtsp://cam.local/door"), True, 16, "beta")
    registry.add(tenant, "yard", CameraSettings(url="rtsp://cam.local/yard"), True, 16, "beta")
    beta.keeper.tick()
    assert set(beta.workers.running) == {"door", "yard"}

    registry.update(door, enabled=False)  # the operator's stop
    beta.keeper.reconcile("door")
    assert set(beta.workers.running) == {"yard"}
    clock[0] += 2 * TTL
    beta.keeper.tick()
    alpha.keeper.tick()
    assert "door" not in alpha.workers.running  # disabled: nobody runs it

    beta.keeper.close("node beta stopping")  # a clean stop: beta leaves, its workers stop, leases released
    assert beta.workers.stopped[-1] == ("yard", "node beta stopping")
    alpha.keeper.reconcile("yard")  # at once, on beta's control message, not a lease later
    assert alpha.workers.epoch("yard") == 2 and alpha.statuses() == []  # no node_down: beta did not die
    beta.keeper.tick()
    assert beta.workers.running == {}  # closed: it takes nothing any more


def test_a_camera_this_node_may_not_run_is_left_to_the_others(store: RepoStore) -> None:
    clock = [1000.0]
    registry = CameraRegistry(store)
    tenant = store.create_tenant("t")
    alpha = Node("alpha", store, clock)
    registry.add(tenant, "odd", CameraSettings(url="rtsp://forbidden.local/s"), True, 16, "alpha")
    assert alpha.keeper.tick() == 0 and alpha.workers.running == {}
    assert CameraLeases(store).get("odd") is None  # not even claimed


def test_a_leaving_node_keeps_its_leases_until_its_workers_have_stopped(store: RepoStore) -> None:
    clock = [1000.0]
    registry = CameraRegistry(store)
    tenant = store.create_tenant("t")
    alpha = Node("alpha", store, clock)

    def two_leases_pass() -> None:  # the heartbeat thread and the other node go on meanwhile
        for _ in range(6):
            clock[0] += TTL / 3
            beta.keeper.heartbeat()
            alpha.keeper.tick()

    beta = Node("beta", store, clock, SlowToStop(two_leases_pass))
    registry.add(tenant, "door", CameraSettings(url="rtsp://cam.local/door"), True, 16, "beta")
    beta.keeper.tick()
    beta.keeper.close("node beta stopping")
    assert alpha.workers.running == {} and alpha.statuses() == []  # not taken while beta's worker was stopping
    alpha.keeper.reconcile("door")  # beta's control message, once its leases are released
    assert alpha.workers.epoch("door") == 2 and alpha.statuses() == []  # no node_down: beta left cleanly
