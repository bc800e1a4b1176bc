"""WatcherService: camera registration and control, independent of transport.

The registry (database) says what should run and on which watcher node; each
node's supervisor runs its own cameras. Every change is written first, then
applied: here when the camera is this node's, else by its node, which hears
of it on the control topic. So a restart brings back exactly the cameras that
were acknowledged as enabled, and two nodes sharing a database never run the
same camera twice. A request may reach any node (API instances compete for
/queue/facewatch.api); the status of another node's camera is the last
camera.status it published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.errors import BadParam

from .cameras import CAMERA_ID, NODE_NAME, Camera, CameraSettings, SourcePolicy, parse_settings
from .nodes import NodeInfo, NodeRegistry
from .registry import CameraRegistry
from .stream import END_OF_FILE
from .supervisor import Supervisor

__all__ = ("WatcherOptions", "WatcherService", "CONTROL_TOPIC", "disable_finished")

log = logging.getLogger(__name__)


CONTROL_TOPIC = "/topic/facewatch.watcher-control"  # its own first word: no camera topic matches it


@dataclass(slots=True, frozen=True)
class WatcherOptions:
    node: str = "local"  # this process's watcher node
    max_cameras_per_tenant: int = 16


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
                 publish: Callable[[str, Any], None], nodes: NodeRegistry) -> None:
        """``threshold`` checks a camera's threshold (number, preset or None): raises BAD_PARAM if it is not one;
        ``publish`` sends to the bus (control messages for other nodes); ``nodes``: the watcher nodes there are."""
        self.registry = registry
        self.nodes = nodes
        self.supervisor = supervisor
        self.policy = policy
        self.threshold = threshold
        self.options = options
        self.node = options.node
        self.publish = publish
        # camera -> (its tenant, its last camera.status), from any node
        self._last_status: dict[str, tuple[str | None, dict[str, Any]]] = {}

    def _check(self, settings: CameraSettings) -> None:
        self.policy.check(settings.url)
        self.threshold(settings.threshold)

    async def register(self, tenant_id: str, data: dict[str, Any]) -> Camera:
        data = dict(data)
        camera_id = data.pop("id", None) or uuid.uuid4().hex[:12]
        enabled = data.pop("enabled", True)
        node = data.pop("node", None) or self.node
        if not isinstance(node, str) or not NODE_NAME.match(node):
            raise BadParam("node must be 1-200 letters, digits, '.', '_' or '-'", "node")
        if node != self.node and await asyncio.to_thread(self.nodes.get, node) is None:
            # A camera given to a node that never ran would be accepted and never run.
            known = ", ".join(n.name for n in await asyncio.to_thread(self.nodes.all)) or "none"
            raise BadParam(f"node {node!r} is not a watcher node of this deployment (a node is known once "
                           f"`facewatch serve` has run with watcher.node: {node}; known: {known})", "node")
        if not isinstance(camera_id, str) or not CAMERA_ID.match(camera_id):
            raise BadParam("id must be 1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit",
                           "id")
        if not isinstance(enabled, bool):
            raise BadParam("enabled must be true or false", "enabled")
        settings = parse_settings(data)
        self._check(settings)
        camera = await asyncio.to_thread(self.registry.add, tenant_id, camera_id, settings, enabled,
                                         self.options.max_cameras_per_tenant, node)
        if camera.enabled:
            await self._apply(camera)
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
        self._check(settings)
        camera = await asyncio.to_thread(self.registry.update, camera, settings)
        if camera.enabled:
            await self._apply(camera)  # new settings need a new worker
        return camera

    async def set_enabled(self, tenant_id: str, camera_id: str, enabled: bool) -> Camera:
        camera = await asyncio.to_thread(self.registry.update, await self.get(tenant_id, camera_id), None, enabled)
        await self._apply(camera)
        return camera

    async def remove(self, tenant_id: str, camera_id: str) -> None:
        camera = await self.get(tenant_id, camera_id)
        await asyncio.to_thread(self.registry.remove, camera)
        await self._apply(camera, removed=True)

    async def _apply(self, camera: Camera, *, removed: bool = False) -> None:
        """Make the camera's node run (or stop) it as the registry now says."""
        if (camera.node or self.node) != self.node:
            self.publish(CONTROL_TOPIC, {"camera": camera.id, "node": camera.node})
            return
        if removed or not camera.enabled:
            await asyncio.to_thread(self.supervisor.stop, camera.id)
        else:
            await asyncio.to_thread(self.supervisor.start, camera)

    async def on_control(self, message: Any) -> None:
        """A control message: if the camera is this node's, run it as the registry says."""
        if (not isinstance(message, dict) or message.get("node") != self.node
                or not isinstance(message.get("camera"), str)):
            return
        camera = await asyncio.to_thread(self.registry.by_id, message["camera"])
        if camera is None:
            await asyncio.to_thread(self.supervisor.stop, message["camera"])
        else:
            await self._apply(camera)

    async def on_repo_event(self, event: Any) -> None:
        """A renamed gallery: the cameras naming it follow the new name. Every node does this for
        every camera of the tenant, so a camera whose node is down is updated too; a second node
        finds the old name gone."""
        if not isinstance(event, dict) or event.get("type") != "gallery.renamed":
            return
        tenant, old, new = event.get("tenant"), event.get("old_name"), event.get("gallery")
        if not (isinstance(tenant, str) and isinstance(old, str) and isinstance(new, str)):
            return
        for camera in await asyncio.to_thread(self.registry.of_tenant, tenant):
            if old not in camera.settings.galleries:
                continue
            galleries = list(dict.fromkeys(new if name == old else name for name in camera.settings.galleries))
            camera = await asyncio.to_thread(self.registry.update, camera,
                                             parse_settings({"galleries": galleries}, camera.settings))
            log.info("camera %s follows gallery %r, renamed from %r", camera.id, new, old)
            if camera.enabled:
                await self._apply(camera)

    def on_camera_event(self, event: Any, tenant: str | None = None) -> None:
        """Every camera.status on the bus, so any node can answer for any camera; ``tenant``: the event's
        (its TENANT_HEADER), so that a camera id registered again by another tenant is not answered with
        the status of the camera that had it before."""
        if isinstance(event, dict) and event.get("type") == "camera.status" and isinstance(event.get("camera"), str):
            self._last_status[event["camera"]] = (tenant, event)

    def status(self, camera: Camera) -> dict[str, Any]:
        if (camera.node or self.node) == self.node:
            return {"id": camera.id, "enabled": camera.enabled, "node": self.node, **self.supervisor.status(camera.id)}
        tenant, last = self._last_status.get(camera.id, (None, {}))
        if tenant is not None and tenant != camera.tenant_id:
            last = {}
        return {"id": camera.id, "enabled": camera.enabled, "node": camera.node,
                "state": last.get("state", "unknown"), "reason": last.get("reason"), "attempt": last.get("attempt"),
                "worker": None, "stats": {}, "as_of": last.get("time")}

    def start_enabled(self) -> int:
        """Start every enabled camera (at server start); returns how many."""
        started = 0
        for camera in self.registry.all():
            if camera.node is None:  # registered before nodes existed: this node adopts it
                camera = self.registry.update(camera, node=self.node)
            if not camera.enabled or camera.node != self.node:
                continue
            try:
                self._check(camera.settings)
            except BadParam as exc:  # e.g. file_roots changed since it was registered
                log.error("camera %s not started: %s", camera.id, exc.reason)
                continue
            self.supervisor.start(camera)
            started += 1
        return started

    def declare(self, tenant_id: str, camera_id: str, settings: CameraSettings, enabled: bool) -> Camera:
        """A camera from config.yaml: created, or updated to match the file."""
        self._check(settings)
        for camera in self.registry.of_tenant(tenant_id):
            if camera.id == camera_id:
                return self.registry.update(camera, settings, enabled, self.node)
        return self.registry.add(tenant_id, camera_id, settings, enabled, self.options.max_cameras_per_tenant,
                                 self.node)

    def close(self) -> None:
        self.supervisor.close()
