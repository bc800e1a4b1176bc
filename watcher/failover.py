"""The lease keeper: which cameras this node runs, kept in step with the database and the other nodes.

Every third of a lease's length, off the event loop, a node

1. (``heartbeat``) records its heartbeat (``watcher_nodes.last_seen``) and
   renews the leases of the cameras it runs; a lease it could not renew was
   taken by another node (this one was presumed dead): its worker stops, and
   says nothing more (the new owner speaks for the camera). This never waits
   for a worker being started or stopped, so a slow stop cannot let the other
   leases expire;
2. (``rebalance``) stops the cameras it holds that were disabled or removed,
   hands back a camera whose preferred node (``cameras.node``) is alive again,
   restarts a camera whose settings changed, and claims the enabled cameras no
   live node holds that the plan gives it (watcher/placement.py: the preferred
   node when alive, else the least loaded), and starts them. A claim that
   replaces another node's expired lease announces ``camera.status``
   ``node_down`` naming that node, then the worker says ``starting`` and
   ``running`` from here.

A change made through any node (register, start, stop, settings, removal) is
applied at once by ``reconcile`` on every node (the control topic), not at the
next pass. A node that stops cleanly leaves the cluster first (so no plan gives
it anything), stops its workers, and releases their leases for the others to
claim at once; an operator's stop is ``enabled = false`` and is never taken over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from api.errors import BadParam
from events import CameraStatus

from .cameras import Camera, event_topics
from .leases import CameraLeases, Claim, Lease, LeaseGrant
from .nodes import NodeRegistry
from .placement import assign, hand_back, live_nodes, loads
from .registry import CameraRegistry

__all__ = ("LeaseOptions", "LeaseKeeper", "Workers", "NODE_DOWN", "CONTROL_TOPIC", "node_down_event")

log = logging.getLogger(__name__)

NODE_DOWN = "node_down"
# Changes to a camera, for every node to apply (its own first word: no camera topic matches it).
CONTROL_TOPIC = "/topic/facewatch.watcher-control"


@dataclass(slots=True, frozen=True)
class LeaseOptions:
    ttl_s: float = 6.0  # a lease not renewed for this long may be taken over

    @property
    def interval_s(self) -> float:
        """Heartbeats, renewals and the search for cameras to take over."""
        return self.ttl_s / 3


class Workers(Protocol):
    """What the keeper needs of the supervisor (watcher/supervisor.py)."""

    def start(self, camera: Camera, lease: LeaseGrant | None = None) -> None: ...

    def stop(self, camera_id: str, reason: str | None = None) -> bool: ...

    def close(self, reason: str | None = None) -> list[str]: ...

    def camera(self, camera_id: str) -> Camera | None: ...


def node_down_event(camera_id: str, claim: Claim, down: str, now: float) -> CameraStatus:
    before = claim.previous
    late = now - before.expires_at if before is not None else 0.0
    return CameraStatus(camera=camera_id, state=NODE_DOWN, node=down, taken_over_by=claim.lease.owner,
                        lease=claim.lease.epoch, time=now,
                        reason=f"node {down} stopped renewing its lease (expired {late:.1f}s ago); "
                               f"node {claim.lease.owner} takes the camera over")


class LeaseKeeper:
    def __init__(self, node: str, registry: CameraRegistry, leases: CameraLeases, nodes: NodeRegistry,
                 supervisor: Workers, publish: Callable[[str, Any], None], check: Callable[[Camera], None],
                 options: LeaseOptions, clock: Callable[[], float] = time.time) -> None:
        """``publish`` sends an event to a topic; ``check`` raises BadParam for a camera this node may not run
        (a file outside its file_roots, say); ``clock``: wall-clock seconds, as leases are written."""
        self.node = node
        self.registry = registry
        self.leases = leases
        self.nodes = nodes
        self.supervisor = supervisor
        self.publish = publish
        self.check = check
        self.options = options
        self.clock = clock
        self._held: dict[str, Lease] = {}  # the cameras this node runs, with the lease it holds
        self._held_lock = threading.Lock()  # held briefly, never across a worker's start or stop
        self._refused: dict[str, float] = {}  # camera -> the settings (updated_at) refused here, logged once
        self._lock = threading.RLock()  # one change at a time: passes and control messages (different threads)
        self._closing = False  # leaving: it claims nothing more
        self._closed = False  # left: its leases are released, nothing to renew

    def held(self) -> dict[str, Lease]:
        with self._held_lock:
            return dict(self._held)

    # -- the periodic passes (blocking: run them off the event loop) ---------------------
    def tick(self) -> int:
        """Both passes, one after the other; returns how many cameras it started."""
        self.heartbeat()
        return self.rebalance()

    def heartbeat(self) -> None:
        """Record this node's heartbeat, renew its leases, stop the workers of those it lost. It goes on while
        the node leaves (its workers may take a while to stop), until their leases are released."""
        if self._closed:
            return
        now = self.clock()
        # The heartbeat first, with the renewals' time: a dead node stops looking alive no later than its
        # leases expire.
        self.nodes.seen(self.node, now)
        held = {c: lease.epoch for c, lease in self.held().items()}
        if not held:
            return
        renewed = self.leases.renew(self.node, held, self.options.ttl_s, now)
        lost = []
        with self._held_lock:
            for camera_id, epoch in held.items():
                lease = self._held.get(camera_id)
                if lease is None or lease.epoch != epoch:
                    continue  # let go (or let go and claimed again) meanwhile
                if camera_id in renewed:
                    self._held[camera_id] = Lease(camera_id, self.node, epoch, renewed[camera_id])
                else:
                    del self._held[camera_id]
                    lost.append((camera_id, epoch))
        for camera_id, epoch in lost:
            # Another node claimed it: this node was presumed dead (it hung, or lost the database).
            log.warning("camera %s: lease %d was taken by another node; stopping this node's worker", camera_id,
                        epoch)
            self.supervisor.stop(camera_id)

    def rebalance(self) -> int:
        """Stop, hand back, restart or claim cameras as the database says; returns how many it started."""
        with self._lock:
            if self._closing:
                return 0
            now = self.clock()
            cameras = {c.id: c for c in self.registry.all()}
            live = self._live(now)
            for camera_id in self.held():
                self._keep(camera_id, cameras.get(camera_id), live)
            return self._claim(list(cameras.values()), self.leases.all(), live)

    def reconcile(self, camera_id: str) -> None:
        """One camera changed (through any node): run it, stop it or leave it, as the database now says."""
        with self._lock:
            if self._closing:
                return
            camera = self.registry.by_id(camera_id)
            now = self.clock()
            live = self._live(now)
            if camera_id in self.held():
                self._keep(camera_id, camera, live)
            elif camera is not None and camera.enabled:
                self._claim([camera], self.leases.all(), live)

    def close(self, reason: str) -> None:
        """Leave the cluster: no plan gives this node anything from now on; stop the workers (their last
        status says ``reason``) while the heartbeat keeps renewing their leases; then release the leases,
        and say so on the control topic, so that other nodes claim the cameras at once."""
        self._closing = True
        with self._lock:
            try:
                self.nodes.leave(self.node)
            except Exception:
                log.exception("node %s: not marked as gone; its cameras move when their leases expire", self.node)
            self.supervisor.close(reason)
            with self._held_lock:
                held, self._held = self._held, {}
                self._closed = True
            if not held:
                return
            try:
                self.leases.release(self.node, {c: lease.epoch for c, lease in held.items()})
            except Exception:
                log.exception("node %s: leases not released; its cameras move when they expire", self.node)
                return
        for camera_id in held:
            self.publish_control(camera_id)

    def publish_control(self, camera_id: str) -> None:
        try:
            self.publish(CONTROL_TOPIC, {"camera": camera_id, "from": self.node})
        except Exception:
            log.exception("camera %s: control message not sent; other nodes act at their next pass", camera_id)

    # -- internals -------------------------------------------------------------------
    def _live(self, now: float) -> set[str]:
        return live_nodes(self.nodes.all(), now, self.options.ttl_s) | {self.node}

    def _keep(self, camera_id: str, camera: Camera | None, live: set[str]) -> None:
        """A camera this node holds: stopped if disabled or removed, handed back to its preferred node if
        that one is alive, restarted if its settings changed."""
        lease = self.held().get(camera_id)
        if lease is None:
            return  # lost meanwhile (the heartbeat stopped it)
        if camera is None or not camera.enabled:
            self.supervisor.stop(camera_id)
            self._let_go(camera_id, lease)
        elif hand_back(camera, self.node, live):
            log.info("camera %s: its preferred node %s is alive; handing it back", camera_id, camera.node)
            self.supervisor.stop(camera_id, reason=f"moved: its preferred node {camera.node} is back")
            self._let_go(camera_id, lease)
            self.publish_control(camera_id)
        else:
            running = self.supervisor.camera(camera_id)
            if running is None or running.updated_at != camera.updated_at:
                if not self._runnable(camera):
                    self.supervisor.stop(camera_id)
                    self._let_go(camera_id, lease)
                    return
                self.supervisor.start(camera, self._grant(lease))

    def _let_go(self, camera_id: str, lease: Lease) -> None:
        with self._held_lock:
            self._held.pop(camera_id, None)
        self.leases.release(self.node, {camera_id: lease.epoch})

    def _claim(self, cameras: list[Camera], leases: Mapping[str, Lease], live: set[str]) -> int:
        now = self.clock()
        held = self.held()
        orphans = [c for c in cameras if c.enabled and c.id not in held
                   and not self._held_elsewhere(leases.get(c.id), now)]
        plan = assign(orphans, live, loads(leases.values(), now))
        started = 0
        for camera in orphans:
            if plan.get(camera.id) == self.node and self._runnable(camera) and self._take(camera):
                started += 1
        return started

    def _held_elsewhere(self, lease: Lease | None, now: float) -> bool:
        return lease is not None and lease.owner != self.node and lease.held(now)

    def _take(self, camera: Camera) -> bool:
        now = self.clock()
        claim = self.leases.claim(camera.id, self.node, self.options.ttl_s, now)
        if claim is None:
            return False  # another node was quicker
        with self._held_lock:
            self._held[camera.id] = claim.lease
        down = claim.taken_from()
        if down is not None:
            log.warning("camera %s: node %s is down (its lease expired); taking it over with lease %d", camera.id,
                        down, claim.lease.epoch)
            event = node_down_event(camera.id, claim, down, now)
            for topic in event_topics(camera):
                self.publish(topic, event)
        self.supervisor.start(camera, self._grant(claim.lease))
        return True

    def _grant(self, lease: Lease) -> LeaseGrant:
        return LeaseGrant(self.node, lease.epoch, lease.expires_at, self.options.ttl_s)

    def _runnable(self, camera: Camera) -> bool:
        try:
            self.check(camera)
        except BadParam as exc:  # e.g. a file outside this node's watcher.file_roots
            if self._refused.get(camera.id) != camera.updated_at:
                self._refused[camera.id] = camera.updated_at
                log.error("camera %s cannot run on node %s: %s", camera.id, self.node, exc.reason)
            return False
        return True
