"""The supervisor with real spawned processes running small worker bodies."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import pytest

from broker.client import BrokerAddress
from events import CameraStatus
from repo.decision import Policy
from watcher.camera_options import pipeline_options
from watcher.cameras import Camera, CameraSettings
from watcher.stream import StreamOptions
from watcher.supervisor import Supervisor, SupervisorOptions
from repo.store import RepoStore
from vision.analyzer import FaceAnalyzer
from watcher.worker import WorkerSpec, snapshot_jpeg
from tests.waiting import eventually


Published = list[tuple[str, CameraStatus]]  # (topic, event) of each status event


# -- worker bodies (module level: spawn pickles them by name) -------------------------
def steady(spec: WorkerSpec, reports: Connection) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reports.send(("status", {"state": "running"}))
    while not stop.wait(0.1):
        reports.send(("stats", {"beat": time.time()}))
    reports.send(("status", {"state": "stopped"}))


def shows_frames(spec: WorkerSpec, reports: Connection) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reports.send(("status", {"state": "running"}))
    reports.send(("frame", {"jpeg": b"\xff\xd8 a jpeg", "time": 12.5, "index": 7}))
    while not stop.wait(0.1):
        reports.send(("stats", {"beat": time.time()}))


def gives_up(spec: WorkerSpec, reports: Connection) -> None:
    reports.send(("status", {"state": "failed", "reason": "no such stream"}))


def crashes(spec: WorkerSpec, reports: Connection) -> None:
    raise SystemExit(3)


def no_analyzer() -> FaceAnalyzer:
    raise AssertionError("these worker bodies analyse nothing")


def no_store() -> RepoStore:
    raise AssertionError("these worker bodies store nothing")


def silent(spec: WorkerSpec, reports: Connection) -> None:
    signal.pause()  # says nothing until the watchdog's SIGKILL


def camera(camera_id: str = "cam") -> Camera:
    return Camera(camera_id, "tenant", CameraSettings(url="rtsp://example/x"), True, 0.0, 0.0)


def spec(cam: Camera) -> WorkerSpec:
    options = pipeline_options(cam.id, cam.settings, Policy(rate=None, threshold=0.3), default_min_quality=0.3)
    return WorkerSpec(cam, StreamOptions(cam.settings.url), options,
                      BrokerAddress("127.0.0.1", 1, "", ""), no_analyzer, no_store, os.getpid())


def wait(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    eventually(condition, timeout_s=timeout_s, interval_s=0.05, what="the supervisor's state")


@pytest.fixture
def published() -> Published:
    return []


def make(target: Callable[..., None], published: Published, **options: float) -> Supervisor:
    """A supervisor whose status events on the camera's own topic land in ``published`` (the copies under
    the tenant's prefix are left out: tests/integration/test_watcher.py reads those)."""
    opts = {"restart_initial_s": 0.2, "restart_max_s": 1.0, "tick_s": 0.05, **options}

    def publish(topic: str, event: Any, headers: dict[str, str] | None = None) -> None:
        if topic.startswith("/topic/watcher."):
            assert isinstance(event, CameraStatus), event  # the supervisor publishes only statuses
            published.append((topic, event))

    return Supervisor(spec, publish, SupervisorOptions(**opts), target=target)


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for s in made:
        s.close()


def test_start_reports_and_stop(published: Published, supervisors: list[Supervisor]) -> None:
    sup = make(steady, published)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: sup.status("cam")["stats"].get("beat") is not None)
    status = sup.status("cam")
    assert status["state"] == "running" and status["worker"]["alive"] and status["worker"]["pid"]
    assert sup.stop("cam") is True and sup.stop("cam") is False
    assert sup.status("cam")["state"] == "stopped" and sup.running() == []


def test_a_workers_latest_frame_is_kept_apart_from_its_stats(published: Published,
                                                             supervisors: list[Supervisor]) -> None:
    sup = make(shows_frames, published)
    supervisors.append(sup)
    assert sup.frame("cam") is None
    sup.start(camera())
    wait(lambda: sup.frame("cam") is not None and sup.status("cam")["stats"].get("beat") is not None)
    assert sup.frame("cam") == {"jpeg": b"\xff\xd8 a jpeg", "time": 12.5, "index": 7}
    assert "jpeg" not in sup.status("cam")["stats"]
    sup.stop("cam")
    assert sup.frame("cam") is None  # a stopped camera has no recent frame


def test_snapshots_are_jpegs_no_larger_than_their_limit() -> None:
    import cv2
    import numpy as np

    image = np.zeros((720, 1280, 3), np.uint8)
    image[100:300, 200:600] = (0, 200, 255)
    def shape(jpeg: bytes) -> tuple[int, ...]:
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        return tuple(decoded.shape)

    assert shape(snapshot_jpeg(image)) == (360, 640, 3)
    assert shape(snapshot_jpeg(np.zeros((120, 160, 3), np.uint8))) == (120, 160, 3)  # never scaled up


def test_a_killed_worker_is_restarted_with_a_new_pid(published: Published, supervisors: list[Supervisor]) -> None:
    sup = make(steady, published)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: sup.status("cam")["worker"]["pid"] is not None and sup.status("cam")["state"] == "running")
    first = sup.status("cam")["worker"]["pid"]
    os.kill(first, signal.SIGKILL)
    wait(lambda: sup.status("cam")["worker"]["restarts"] == 1
         and sup.status("cam")["worker"]["pid"] not in (None, first))
    (topic, event), = [p for p in published if p[1].state == "restarting"]
    assert topic == "/topic/watcher.cam" and event.reason == "worker killed by SIGKILL"
    # Not the worker's own event: no run of it to count in.
    assert event.camera == "cam" and event.attempt == 1 and (event.run, event.seq) == ("", 0)


def test_crash_loops_back_off(published: Published, supervisors: list[Supervisor]) -> None:
    sup = make(crashes, published, restart_initial_s=0.2, restart_max_s=0.8)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: len(published) >= 4)
    delays = [event.restart_in_s for _, event in published[:4]]
    assert delays == [0.2, 0.4, 0.8, 0.8]
    assert [event.attempt for _, event in published[:4]] == [1, 2, 3, 4]
    assert all(event.reason == "worker exited with code 3" for _, event in published)


def test_a_worker_that_ends_cleanly_is_not_restarted(published: Published, supervisors: list[Supervisor]) -> None:
    sup = make(gives_up, published)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: sup.status("cam")["worker"]["last_exit"] == "exited with code 0")
    # The step that records the exit is the one that would schedule the restart: none is.
    status = sup.status("cam")
    assert status["state"] == "failed" and status["reason"] == "no such stream" and status["worker"]["restarts"] == 0
    assert status["worker"]["restart_at"] is None and published == []


def test_how_a_worker_ended_by_itself_stays_to_be_asked_for_once_it_is_stopped(
        published: Published, supervisors: list[Supervisor]) -> None:
    # A file played to its end is disabled and stopped by the node's keeper: `cameras status` still says why.
    sup = make(gives_up, published)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: sup.status("cam")["worker"]["last_exit"] == "exited with code 0")
    assert sup.ended(camera()) is None  # still the supervisor's
    assert sup.stop("cam")
    ended = sup.ended(camera())
    assert ended is not None and ended["state"] == "failed" and ended["reason"] == "no such stream"
    assert sup.status("cam") == {"state": "stopped", "worker": None}  # not running
    # Another camera with the id (removed and registered again, or another tenant's) is not answered with it.
    assert sup.ended(replace(camera(), created_at=1.0)) is None
    assert sup.ended(replace(camera(), tenant_id="other")) is None
    sup.start(camera())  # started again: the old ending is no answer any more
    assert sup.ended(camera()) is None
    sup.stop("cam")  # stopped by the operator while alive: nothing kept
    assert sup.ended(camera()) is None


def test_a_silent_worker_is_killed_by_the_watchdog(published: Published, supervisors: list[Supervisor]) -> None:
    sup = make(silent, published, watchdog_s=1.0)
    supervisors.append(sup)
    sup.start(camera())
    wait(lambda: any(e.state == "restarting" for _, e in published))
    reason = published[0][1].reason
    assert reason is not None and "SIGKILL" in reason
