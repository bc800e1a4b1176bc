"""Watcher nodes: recorded when they start; a camera naming a node that never ran is refused."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from api.errors import BadParam
from repo.store import open_store
from watcher.cameras import Camera, SourcePolicy
from watcher.leases import CameraLeases
from watcher.nodes import NodeRegistry
from watcher.registry import CameraRegistry
from watcher.service import CONTROL_TOPIC, WatcherOptions, WatcherService
from watcher.supervisor import Supervisor, SupervisorOptions
from watcher.worker import WorkerSpec


def no_spec(camera: Camera) -> WorkerSpec:
    raise AssertionError("no camera of another node is started here")


def test_a_camera_for_an_unknown_node_is_refused_and_a_known_one_accepted(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'repo.db'}")
    tenant = store.create_tenant("acme")
    cameras = CameraRegistry(store)
    nodes = NodeRegistry(store)
    nodes.announce("alpha", "host-a", os.getpid())
    published: list[tuple[str, Any]] = []
    supervisor = Supervisor(no_spec, lambda t, e, h=None: None, SupervisorOptions())
    service = WatcherService(cameras, supervisor, SourcePolicy(), lambda value: value, WatcherOptions(node="alpha"),
                             lambda topic, body: published.append((topic, body)), nodes, CameraLeases(store))

    async def register(**data: Any) -> Camera:
        return await service.register(tenant, {"url": "rtsp://cam.local/s", "enabled": True, **data})

    with pytest.raises(BadParam) as refused:
        asyncio.run(register(id="door", node="betta"))  # a typo of beta, which has not started yet either
    assert refused.value.param == "node" and "betta" in refused.value.reason and "alpha" in refused.value.reason
    assert cameras.of_tenant(tenant) == [] and published == []  # nothing written, nothing sent
    nodes.announce("beta", "host-b", 1234)
    camera = asyncio.run(register(id="door", node="beta"))
    # beta is alive (it has just announced itself): alpha leaves the camera to it and tells it.
    assert camera.node == "beta" and published == [(CONTROL_TOPIC, {"camera": "door", "from": "alpha"})]
    assert [n.name for n in asyncio.run(service.list_nodes())] == ["alpha", "beta"]
    before = nodes.get("beta")
    assert before is not None
    nodes.seen("beta")
    after = nodes.get("beta")
    assert after is not None and after.last_seen >= before.last_seen and after.started_at == before.started_at
    store.close()
