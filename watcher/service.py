"""WatcherService: camera registration and control, independent of transport.

The registry (database) says which cameras should run, each with the node it
prefers; leases say which node runs each (watcher/leases.py), and every node's
lease keeper (watcher/failover.py) runs the cameras whose leases it holds.
Every change is written first, then applied: here, and on every other node,
which hears of it on the control topic. So a restart brings back exactly the
cameras that were acknowledged as enabled, a camera never runs on two nodes at
once, and a node that dies has its cameras taken over by the live ones. A
request may reach any node (API instances compete for /queue/facewatch.api);
the status of a camera another node runs is the last camera.status it
published, under its current lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.errors import BadParam
from events import CameraStatus, Event, GalleryRenamed

from .cameras import CAMERA_ID, NODE_NAME, Camera, CameraSettings, SourcePolicy, parse_settings
from .failover import CONTROL_TOPIC, NODE_DOWN, LeaseKeeper, LeaseOptions
from .leases import CameraLeases
from .nodes import NodeInfo, NodeRegistry
from .registry import CameraRegistry
from .stream import END_OF_FILE
from .supervisor import Supervisor

__all__ = ("WatcherOptions", "WatcherService", "CONTROL_TOPIC", "disable_finished")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class WatcherOptions:
    node: str = "local"  # this process's watcher node
    max_cameras_per_tenant: int = 16
    lease_ttl_s: float = 6.0  # a camera whose node has not renewed its lease for this long is taken over


def disable_finished(registry: CameraRegistry, camera: Camera, status: dict[str, Any]) -> None:
    """A worker that ended by itself (the supervisor's ``on_ended``): a file played to its end is done,
    so its camera is disabled and a restart does not play it again. A source that failed for good stays
    enabled: the next start tries it again. Nothing changes if the camera was changed meanwhile."""
    if status.get("state") != "stopped" or status.get("reason") != END_OF_FILE:
        return
    current = registry.by_id(camera.id)
    if current is None or not current.enabled or current.updated_at != camera.updated_at:
        return
    registry.update(current, enabled=False)
    log.info("camera %s: %s; disabled (start it to play it again)", camera.id, END_OF_FILE)


class WatcherService:
    def __init__(self, registry: CameraRegistry, supervisor: Supervisor, policy: SourcePolicy,
                 threshold: Callable[[Any], object], options: WatcherOptions,
                 publish: Callable[[str, Any], None], nodes: NodeRegistry, leases: CameraLeases) -> None:
        """``threshold`` checks a camera's threshold (number, preset or None): raises BAD_PARAM if it is not one;
        ``publish`` sends to the bus (events, control messages for other nodes); ``nodes``: the watcher nodes
        there are; ``leases``: which node runs which camera."""
        self.registry = registry
        self.nodes = nodes
        self.leases = leases
        self.supervisor = supervisor
        self.policy = policy
        self.threshold = threshold
        self.options = options
        self.node = options.node
        self.publish = publish
        self.keeper = LeaseKeeper(self.node, registry, leases, nodes, supervisor, publish,
                                  # no name resolved under the keeper's lock: the worker checks at each open
                                  lambda camera: self._check(camera.settings, resolve=False),
                                  LeaseOptions(options.lease_ttl_s))
        # camera -> (its tenant, its last camera.status), from any node
        self._last_status: dict[str, tuple[str | None, CameraStatus]] = {}

    def _check(self, settings: CameraSettings, resolve: bool = True) -> None:
        """BAD_PARAM for settings this node refuses (``resolve``: a host name by its addresses; blocking)."""
        self.policy.check(settings.url, resolve)
        self.threshold(settings.threshold)

    async def register(self, tenant_id: str, data: dict[str, Any]) -> Camera:
        data = dict(data)
        camera_id = data.pop("id", None) or uuid.uuid4().hex[:12]
        enabled = data.pop("enabled", True)
        node = data.pop("node", None) or self.node
        if not isinstance(node, str) or not NODE_NAME.match(node):
            raise BadParam("node must be 1-200 letters, digits, '.', '_' or '-'", "node")
        if node != self.node and await asyncio.to_thread(self.nodes.get, node) is None:
            # A preference for a node that never ran is a typo more often than a plan.
            known = ", ".join(n.name for n in await asyncio.to_thread(self.nodes.all)) or "none"
            raise BadParam(f"node {node!r} is not a watcher node of this deployment (a node is known once "
                           f"`facewatch serve` has run with watcher.node: {node}; known: {known})", "node")
        if not isinstance(camera_id, str) or not CAMERA_ID.match(camera_id):
            raise BadParam("id must be 1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit",
                           "id")
        if not isinstance(enabled, bool):
            raise BadParam("enabled must be true or false", "enabled")
        settings = parse_settings(data)
        await asyncio.to_thread(self._check, settings)  # resolves a camera's host name
        camera = await asyncio.to_thread(self.registry.add, tenant_id, camera_id, settings, enabled,
                                         self.options.max_cameras_per_tenant, node)
        if camera.enabled:
            await self._apply(camera.id)
        return camera

    async def list_nodes(self) -> list[NodeInfo]:
        return await asyncio.to_thread(self.nodes.all)

    async def get(self, tenant_id: str, camera_id: str) -> Camera:
        return await asyncio.to_thread(self.registry.get, tenant_id, camera_id)

    async def list(self, tenant_id: str) -> list[Camera]:
        return await asyncio.to_thread(self.registry.of_tenant, tenant_id)

    async def update(self, tenant_id: str, camera_id: str, data: dict[str, Any]) -> Camera:
        camera = await self.get(tenant_id, camera_id)
        fixed = [k for k in ("id", "enabled", "node") if k in data]
        if fixed:
            raise BadParam(f"{fixed[0]} cannot be changed here (start/stop, or remove and register)", fixed[0])
        settings = parse_settings(data, camera.settings)
        await asyncio.to_thread(self._check, settings)
        camera = await asyncio.to_thread(self.registry.update, camera, settings)
        if camera.enabled:
            await self._apply(camera.id)  # new settings need a new worker
        return camera

    async def set_enabled(self, tenant_id: str, camera_id: str, enabled: bool) -> Camera:
        camera = await asyncio.to_thread(self.registry.update, await self.get(tenant_id, camera_id), None, enabled)
        await self._apply(camera.id)
        return camera

    async def remove(self, tenant_id: str, camera_id: str) -> None:
        camera = await self.get(tenant_id, camera_id)
        await asyncio.to_thread(self.registry.remove, camera)
        lease = await asyncio.to_thread(self.leases.get, camera.id)
        if lease is not None and not lease.held(time.time()):
            await asyncio.to_thread(self.leases.forget, camera.id)  # else its holder releases it as it stops
        await self._apply(camera.id)

    async def _apply(self, camera_id: str) -> None:
        """Every node (this one included) runs, stops or leaves the camera as the registry now says."""
        self.publish(CONTROL_TOPIC, {"camera": camera_id, "from": self.node})
        await asyncio.to_thread(self.keeper.reconcile, camera_id)

    async def on_control(self, message: Any) -> None:
        """A control message from another node: a camera changed."""
        if (not isinstance(message, dict) or message.get("from") == self.node
                or not isinstance(message.get("camera"), str)):
            return
        await asyncio.to_thread(self.keeper.reconcile, message["camera"])

    async def on_repo_event(self, event: Event) -> None:
        """A renamed gallery: the cameras naming it follow the new name. Every node does this for
        every camera of the tenant, so a camera whose node is down is updated too; a second node
        finds the old name gone."""
        if not isinstance(event, GalleryRenamed):
            return
        tenant, old, new = event.tenant, event.old_name, event.gallery
        for camera in await asyncio.to_thread(self.registry.of_tenant, tenant):
            if old not in camera.settings.galleries:
                continue
            galleries = list(dict.fromkeys(new if name == old else name for name in camera.settings.galleries))
            camera = await asyncio.to_thread(self.registry.update, camera,
                                             parse_settings({"galleries": galleries}, camera.settings))
            log.info("camera %s follows gallery %r, renamed from %r", camera.id, new, old)
            if camera.enabled:
                await self._apply(camera.id)

    def on_camera_event(self, event: Event, tenant: str | None = None) -> None:
        """Every camera.status on the bus, so any node can answer for any camera. ``tenant``: the event's
        (its TENANT_HEADER), so that a camera id registered again by another tenant is not answered with
        the status of the camera that had it before. A status under an older lease than one already seen
        (a stale node's) does not replace it."""
        if not isinstance(event, CameraStatus):
            return
        seen = self._last_status.get(event.camera)
        if seen is not None and seen[0] == tenant and (event.lease or 0) < (seen[1].lease or 0):
            return
        self._last_status[event.camera] = (tenant, event)

    async def status(self, camera: Camera) -> dict[str, Any]:
        if camera.id in self.supervisor.running():
            return {"id": camera.id, "enabled": camera.enabled, "node": self.node, "preferred_node": camera.node,
                    **self.supervisor.status(camera.id)}
        lease = await asyncio.to_thread(self.leases.get, camera.id)
        base = {"id": camera.id, "enabled": camera.enabled, "preferred_node": camera.node, "worker": None,
                "stats": {}, "lease": None if lease is None else lease.epoch}
        tenant, last = self._last_status.get(camera.id, (None, None))
        if last is not None and (tenant != camera.tenant_id or last.time < camera.created_at):
            last = None  # the camera that had this id before (another tenant's, or one removed since)
        if not camera.enabled:
            # The worker that ended by itself here says how (with its stats); on another node, its last
            # status on the bus (a file at its end); else the database says it all.
            ended = self.supervisor.ended(camera)
            if ended is not None:
                return {**base, **ended, "enabled": False, "node": self.node}
            if last is not None and last.state == "stopped":
                return {**base, "node": last.node or camera.node, "state": last.state, "reason": last.reason,
                        "attempt": None, "as_of": last.time}
            return {**base, "node": camera.node, "state": "stopped", "reason": None, "attempt": None}
        if lease is not None and lease.owner is not None and lease.owner != self.node:
            if not lease.held(time.time()):  # not renewed, not yet taken over (by no live node, or not yet)
                return {**base, "node": lease.owner, "state": NODE_DOWN, "attempt": None, "as_of": lease.expires_at,
                        "reason": f"node {lease.owner} stopped renewing its lease; waiting for a live node to "
                                  "take the camera over"}
            if last is not None and last.lease != lease.epoch:
                last = None  # a status of an earlier lease: not this one's
        node = lease.owner if lease is not None and lease.owner else camera.node
        if last is None:
            return {**base, "node": node, "state": "unknown", "reason": None, "attempt": None, "as_of": None}
        return {**base, "node": node, "state": last.state, "reason": last.reason, "attempt": last.attempt,
                "as_of": last.time}

    def frame(self, camera: Camera) -> dict[str, Any] | None:
        """The camera's latest analysed frame ({jpeg, time, index}) when it runs on this node; None otherwise
        (another node's frames stay there: they are not worth the bus's bandwidth)."""
        if (camera.node or self.node) != self.node:
            return None
        return self.supervisor.frame(camera.id)

    def start_enabled(self) -> int:
        """At server start: this node's first pass (its own cameras, and those no live node runs);
        returns how many it started."""
        for camera in self.registry.all():
            if camera.node is None:  # registered before nodes existed: this node is its preference
                self.registry.update(camera, node=self.node)
        return self.keeper.tick()

    def declare(self, tenant_id: str, camera_id: str, settings: CameraSettings, enabled: bool) -> Camera:
        """A camera from config.yaml: created, or updated to match the file."""
        self._check(settings)
        for camera in self.registry.of_tenant(tenant_id):
            if camera.id == camera_id:
                return self.registry.update(camera, settings, enabled, self.node)
        return self.registry.add(tenant_id, camera_id, settings, enabled, self.options.max_cameras_per_tenant,
                                 self.node)

    def close(self) -> None:
        """The node stops: its cameras are released for the other nodes (watcher/failover.py)."""
        self.keeper.close(f"node {self.node} stopping")

