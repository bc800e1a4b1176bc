"""What `cameras status` says of a camera that is not running on the node asked (WatcherService.status):
any node may answer (STOMP requests go to whichever node takes them)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

from events import CameraStatus
from watcher.cameras import Camera, CameraSettings, SourcePolicy
from watcher.leases import CameraLeases
from watcher.nodes import NodeRegistry
from watcher.registry import CameraRegistry
from watcher.service import WatcherOptions, WatcherService
from watcher.supervisor import Supervisor

CREATED = 1000.0


class _IdleSupervisor:
    """Runs nothing here; ``kept`` is what it keeps of a worker that ended by itself on this node."""

    def __init__(self, kept: dict[str, Any] | None = None) -> None:
        self.kept = kept

    def running(self) -> list[str]:
        return []

    def ended(self, camera: Camera) -> dict[str, Any] | None:
        return self.kept


class _NoLeases:
    def get(self, camera_id: str) -> None:
        return None


def _service(supervisor: _IdleSupervisor) -> WatcherService:
    return WatcherService(cast(CameraRegistry, None), cast(Supervisor, supervisor), cast(SourcePolicy, None),
                          lambda threshold: None, WatcherOptions(node="b"), lambda topic, event: None,
                          cast(NodeRegistry, None), cast(CameraLeases, _NoLeases()))


def _camera(enabled: bool = False) -> Camera:
    return Camera("door", "t1", CameraSettings(url="file:///clip.mp4"), enabled, CREATED, CREATED + 5)


def _ended_on_node_a(time: float = CREATED + 60) -> CameraStatus:
    return CameraStatus(camera="door", state="stopped", reason="end of file", node="a", time=time)


def _status(service: WatcherService, camera: Camera) -> dict[str, Any]:
    return asyncio.run(service.status(camera))


def test_a_file_that_ended_on_another_node_says_so_on_this_one() -> None:
    service = _service(_IdleSupervisor())
    service.on_camera_event(_ended_on_node_a(), tenant="t1")
    status = _status(service, _camera())
    assert (status["state"], status["reason"], status["node"], status["enabled"]) == ("stopped", "end of file", "a",
                                                                                      False)


def test_the_node_that_ran_it_answers_with_its_stats() -> None:
    kept = {"state": "stopped", "reason": "end of file", "stats": {"analysed": 42}, "worker": None, "attempt": None}
    service = _service(_IdleSupervisor(kept))
    status = _status(service, _camera())
    assert status["stats"] == {"analysed": 42} and status["node"] == "b" and status["reason"] == "end of file"


def test_the_status_of_a_camera_that_had_the_id_before_is_no_answer() -> None:
    for tenant, time in (("t2", CREATED + 60), ("t1", CREATED - 60)):  # another tenant's; one removed since
        service = _service(_IdleSupervisor())
        service.on_camera_event(_ended_on_node_a(time), tenant=tenant)
        status = _status(service, _camera())
        assert status["state"] == "stopped" and status["reason"] is None, (tenant, time)
        enabled = _status(service, replace(_camera(), enabled=True))
        assert enabled["state"] == "unknown", (tenant, time)
