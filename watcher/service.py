"""WatcherService: camera registration and control, independent of transport.

The registry (database) says what should run; the supervisor runs it. Every
change is written first, then applied, so a restart of the server brings back
exactly the cameras that were acknowledged as enabled.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.errors import BadParam

from .cameras import CAMERA_ID, Camera, CameraSettings, SourcePolicy, parse_settings
from .registry import CameraRegistry
from .supervisor import Supervisor

__all__ = ("WatcherOptions", "WatcherService")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class WatcherOptions:
    max_cameras_per_tenant: int = 16


class WatcherService:
    def __init__(self, registry: CameraRegistry, supervisor: Supervisor, policy: SourcePolicy,
                 threshold: Callable[[Any], float], options: WatcherOptions) -> None:
        """``threshold`` turns a camera's threshold (number, preset or None) into a number, or raises BAD_PARAM."""
        self.registry = registry
        self.supervisor = supervisor
        self.policy = policy
        self.threshold = threshold
        self.options = options

    def _check(self, settings: CameraSettings) -> None:
        self.policy.check(settings.url)
        self.threshold(settings.threshold)

    async def register(self, tenant_id: str, data: dict[str, Any]) -> Camera:
        data = dict(data)
        camera_id = data.pop("id", None) or uuid.uuid4().hex[:12]
        enabled = data.pop("enabled", True)
        if not isinstance(camera_id, str) or not CAMERA_ID.match(camera_id):
            raise BadParam("id must be 1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit",
                           "id")
        if not isinstance(enabled, bool):
            raise BadParam("enabled must be true or false", "enabled")
        settings = parse_settings(data)
        self._check(settings)
        camera = await asyncio.to_thread(self.registry.add, tenant_id, camera_id, settings, enabled,
                                         self.options.max_cameras_per_tenant)
        if camera.enabled:
            await asyncio.to_thread(self.supervisor.start, camera)
        return camera

    async def get(self, tenant_id: str, camera_id: str) -> Camera:
        return await asyncio.to_thread(self.registry.get, tenant_id, camera_id)

    async def list(self, tenant_id: str) -> list[Camera]:
        return await asyncio.to_thread(self.registry.list, tenant_id)

    async def update(self, tenant_id: str, camera_id: str, data: dict[str, Any]) -> Camera:
        camera = await self.get(tenant_id, camera_id)
        if "id" in data or "enabled" in data:
            raise BadParam("id and enabled cannot be changed here (use start/stop)", "id" if "id" in data else "enabled")
        settings = parse_settings(data, camera.settings)
        self._check(settings)
        camera = await asyncio.to_thread(self.registry.update, camera, settings)
        if camera.enabled:
            await asyncio.to_thread(self.supervisor.start, camera)  # new settings need a new worker
        return camera

    async def set_enabled(self, tenant_id: str, camera_id: str, enabled: bool) -> Camera:
        camera = await asyncio.to_thread(self.registry.update, await self.get(tenant_id, camera_id), None, enabled)
        if enabled:
            await asyncio.to_thread(self.supervisor.start, camera)
        else:
            await asyncio.to_thread(self.supervisor.stop, camera_id)
        return camera

    async def remove(self, tenant_id: str, camera_id: str) -> None:
        camera = await self.get(tenant_id, camera_id)
        await asyncio.to_thread(self.supervisor.stop, camera_id)
        await asyncio.to_thread(self.registry.remove, camera)

    def status(self, camera: Camera) -> dict[str, Any]:
        return {"id": camera.id, "enabled": camera.enabled, **self.supervisor.status(camera.id)}

    def start_enabled(self) -> int:
        """Start every enabled camera (at server start); returns how many."""
        started = 0
        for camera in self.registry.all():
            if not camera.enabled:
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
        for camera in self.registry.list(tenant_id):
            if camera.id == camera_id:
                return self.registry.update(camera, settings, enabled)
        return self.registry.add(tenant_id, camera_id, settings, enabled, self.options.max_cameras_per_tenant)

    def close(self) -> None:
        self.supervisor.close()
