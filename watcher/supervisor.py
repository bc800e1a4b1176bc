"""The supervisor: one spawned worker process per running camera.

It starts and stops workers, collects their reports, and restarts a worker
that died (non-zero exit or a signal) or went silent, with exponential
backoff; a worker that ran long enough before dying starts the backoff over.
A worker that ends by itself with exit 0 (a file ended, a source that failed
for good) is not restarted: its last status says why.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from events import CameraStatus

from .cameras import Camera, event_headers, event_topics
from .leases import LeaseGrant
from .worker import WorkerSpec, run_worker

__all__ = ("SupervisorOptions", "Supervisor", "EventPublish")

log = logging.getLogger(__name__)

# Cameras whose ended worker's last status is kept for `status` (a file played to its end, disabled).
MAX_ENDED_KEPT = 1000


class EventPublish(Protocol):
    """Sends an event to a topic, with STOMP headers (the camera's tenant: cameras.event_headers)."""

    def __call__(self, destination: str, body: Any, headers: dict[str, str] | None = None, /) -> None: ...


@dataclass(slots=True, frozen=True)
class SupervisorOptions:
    restart_initial_s: float = 1.0
    restart_max_s: float = 60.0
    stable_after_s: float = 60.0  # a worker that ran this long before dying restarts without delay growth
    watchdog_s: float = 30.0  # no report for this long: the worker is killed and restarted
    stop_timeout_s: float = 10.0
    tick_s: float = 0.2


@dataclass(slots=True)
class _Worker:
    camera: Camera
    lease: LeaseGrant | None = None  # what it runs under (its events carry the epoch)
    process: BaseProcess | None = None
    # Its own pipe per worker, not one shared queue: a worker killed while
    # writing can corrupt only its own channel, never its neighbours'. Reports come up it; the one message
    # down is why the worker is being stopped (when it is not the operator's stop).
    reports: Connection | None = None
    started_at: float = 0.0
    last_report: float = 0.0
    restarts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    frame: dict[str, Any] | None = None  # its latest snapshot: {jpeg, time, index}
    last_exit: str = ""
    ended: bool = False  # exited by itself, cleanly (a file at its end, a source given up): not restarted


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, make_spec: Callable[[Camera], WorkerSpec], publish: EventPublish,
                 options: SupervisorOptions, target: Callable[[WorkerSpec, Any], None] = run_worker,
                 on_ended: Callable[[Camera, dict[str, Any]], None] | None = None) -> None:
        """``make_spec`` turns a camera into what its worker needs; ``publish`` sends an event to a topic;
        ``target`` is the worker's body (a module-level function: it is pickled for spawn); ``on_ended`` is
        told of a worker that ended by itself (exit 0) with its last status, on the monitor thread."""
        self.make_spec = make_spec
        self.target = target
        self.publish = publish
        self.on_ended = on_ended
        self.options = options
        self._ctx = mp.get_context("spawn")  # fork would copy the server's threads and sockets
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.RLock()
        # camera -> the camera (its tenant and creation: which incarnation of the id) and the last status of
        # its worker that ended by itself
        self._ended: dict[str, tuple[Camera, dict[str, Any]]] = {}
        self._closed = threading.Event()
        self._monitor = threading.Thread(target=self._run, name="watcher-supervisor", daemon=True)
        self._monitor.start()

    # -- control (any thread) ----------------------------------------------------------
    def start(self, camera: Camera, lease: LeaseGrant | None = None) -> None:
        """Run ``camera`` with these settings (restarting its worker if it runs), under ``lease`` (None:
        unfenced, for a single process without leases)."""
        with self._lock:
            if camera.id in self._workers:
                self._stop_worker(self._workers.pop(camera.id))
            self._ended.pop(camera.id, None)
            worker = _Worker(camera, lease)
            self._workers[camera.id] = worker
            self._spawn(worker)

    def stop(self, camera_id: str, reason: str | None = None) -> bool:
        """Stop the camera's worker; False when it was not running. ``reason`` (the node stops, the camera
        moves to another node) is the reason of its last ``stopped`` status; none: the operator's stop."""
        with self._lock:
            worker = self._workers.pop(camera_id, None)
            if worker is not None and worker.ended:
                # It ended by itself (a file played to its end): how it ended stays to be asked for.
                self._ended[camera_id] = (worker.camera, self._status_of(worker))
                while len(self._ended) > MAX_ENDED_KEPT:
                    del self._ended[next(iter(self._ended))]
        if worker is None:
            return False
        self._stop_worker(worker, reason)
        return True

    def ended(self, camera: Camera) -> dict[str, Any] | None:
        """The last status (and stats) of the camera's worker if it ended by itself on this node and was
        not started again since; None otherwise, and for another camera that has the id now (removed and
        registered again, by this tenant or another)."""
        with self._lock:
            kept = self._ended.get(camera.id)
        if kept is None or (kept[0].tenant_id, kept[0].created_at) != (camera.tenant_id, camera.created_at):
            return None
        return kept[1]

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._workers)

    def camera(self, camera_id: str) -> Camera | None:
        """The camera as its worker runs it (its settings), or None."""
        with self._lock:
            worker = self._workers.get(camera_id)
            return None if worker is None else worker.camera

    def status(self, camera_id: str) -> dict[str, Any]:
        with self._lock:
            worker = self._workers.get(camera_id)
            if worker is None:
                return {"state": "stopped", "worker": None}
            return self._status_of(worker)

    @staticmethod
    def _status_of(worker: _Worker) -> dict[str, Any]:
        alive = worker.process is not None and worker.process.is_alive()
        return {
            "state": worker.status.get("state", "starting"),
            "reason": worker.status.get("reason"), "attempt": worker.status.get("attempt"),
            "worker": {"pid": worker.process.pid if alive and worker.process else None, "alive": alive,
                       "started_at": worker.started_at, "restarts": worker.restarts,
                       "last_exit": worker.last_exit or None, "restart_at": worker.restart_at},
            "stats": dict(worker.stats), "lease": worker.lease.epoch if worker.lease else None,
        }

    def frame(self, camera_id: str) -> dict[str, Any] | None:
        """The running camera's latest analysed frame ({jpeg, time, index}); None before the first."""
        with self._lock:
            worker = self._workers.get(camera_id)
            return None if worker is None else worker.frame

    def close(self, reason: str | None = None) -> list[str]:
        """Stop every worker (``reason``: as in ``stop``); returns the cameras that were running."""
        self._closed.set()
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            if worker.process is not None and worker.process.is_alive():
                self._tell_why(worker, reason)
                worker.process.terminate()  # all at once, then wait for each
        for worker in workers:
            self._stop_worker(worker, reason)
        self._monitor.join(timeout=5)
        return [worker.camera.id for worker in workers]

    # -- internals -------------------------------------------------------------------
    def _spawn(self, worker: _Worker) -> None:
        receiver, sender = self._ctx.Pipe(duplex=True)  # reports up, the reason of a stop down
        worker.reports = receiver
        spec = self.make_spec(worker.camera)
        if worker.lease is not None:
            spec = replace(spec, lease=worker.lease)
        worker.process = self._ctx.Process(target=self.target, args=(spec, sender),
                                           name=f"watcher-{worker.camera.id}", daemon=True)
        worker.process.start()
        sender.close()  # the child holds its end; EOF here once it is gone
        worker.started_at = worker.last_report = time.monotonic()
        worker.restart_at = None
        log.info("camera %s: worker pid %s started", worker.camera.id, worker.process.pid)

    @staticmethod
    def _tell_why(worker: _Worker, reason: str | None) -> None:
        if reason and worker.reports is not None:
            try:
                worker.reports.send(("stop", reason))
            except OSError:
                pass  # gone already

    def _stop_worker(self, worker: _Worker, reason: str | None = None) -> None:
        process = worker.process
        if process is None:
            return
        if process.is_alive():
            self._tell_why(worker, reason)
            process.terminate()  # SIGTERM: the worker finishes its frame and says "stopped" (with the reason)
        process.join(self.options.stop_timeout_s)
        if process.is_alive():
            log.warning("camera %s: worker did not stop in %.0fs; killing it", worker.camera.id,
                        self.options.stop_timeout_s)
            process.kill()
            process.join(5)
            self._publish_status(worker, CameraStatus(camera=worker.camera.id, state="stopped", reason=reason or None))
        process.close()
        worker.process = None
        if worker.reports is not None:
            worker.reports.close()
            worker.reports = None

    def _publish_status(self, worker: _Worker, status: CameraStatus) -> None:
        if worker.lease is not None:  # as the worker's own events: where it ran, under which lease
            status = replace(status, node=worker.lease.node, lease=worker.lease.epoch)
        for topic in event_topics(worker.camera):
            self.publish(topic, status, event_headers(worker.camera))

    def _run(self) -> None:
        while not self._closed.wait(self.options.tick_s):
            ended: list[_Worker] = []
            with self._lock:
                for worker in list(self._workers.values()):
                    self._drain_reports(worker)
                    if self._check(worker):
                        ended.append(worker)
            for worker in ended:  # outside the lock: the callback may write to the database
                if self.on_ended is not None:
                    try:
                        self.on_ended(worker.camera, dict(worker.status))
                    except Exception:  # the monitor thread must live on
                        log.exception("camera %s: the end-of-worker callback failed", worker.camera.id)

    @staticmethod
    def _drain_reports(worker: _Worker) -> None:
        channel = worker.reports
        try:
            while channel is not None and channel.poll():
                kind, body = channel.recv()
                worker.last_report = time.monotonic()
                if kind == "status":
                    worker.status = body
                elif kind == "frame":
                    worker.frame = body
                else:
                    worker.stats = body
        except (EOFError, OSError):
            pass  # the worker is gone; _check sees how it ended

    def _check(self, worker: _Worker) -> bool:
        """Restart, kill or reap ``worker`` as its state says; True when it has just ended by itself."""
        now = time.monotonic()
        process = worker.process
        if process is None:
            if worker.restart_at is not None and now >= worker.restart_at:
                worker.restarts += 1
                self._spawn(worker)
            return False
        if process.is_alive():
            if now - worker.last_report > self.options.watchdog_s:
                log.error("camera %s: worker silent for %.0fs; killing it", worker.camera.id, now - worker.last_report)
                process.kill()
            return False
        self._drain_reports(worker)  # its last words (a final status) come first
        code = process.exitcode
        process.close()
        worker.process = None
        if worker.reports is not None:
            worker.reports.close()
            worker.reports = None
        worker.last_exit = _describe_exit(code)
        if code == 0:
            log.info("camera %s: worker ended (%s)", worker.camera.id, worker.status.get("state"))
            worker.ended = True
            return True
        ran = now - worker.started_at
        worker.crashes_in_a_row = 1 if ran >= self.options.stable_after_s else worker.crashes_in_a_row + 1
        delay = min(self.options.restart_initial_s * 2 ** (worker.crashes_in_a_row - 1), self.options.restart_max_s)
        worker.restart_at = now + delay
        log.error("camera %s: worker %s after %.1fs; restarting in %.1fs", worker.camera.id, worker.last_exit, ran,
                  delay)
        status = CameraStatus(camera=worker.camera.id, state="restarting", reason=f"worker {worker.last_exit}",
                              attempt=worker.crashes_in_a_row, restart_in_s=delay)
        worker.status = status.to_json()
        self._publish_status(worker, status)
        return False
