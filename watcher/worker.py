"""One camera's worker process: read the stream, run the pipeline, publish events.

Spawned by the supervisor with everything it needs in a picklable
``WorkerSpec`` (factories, not live objects: models and connections are made
inside the process). It reports status and stats to the supervisor on a queue
once a second; the supervisor restarts it when it dies or goes silent, and
stops it with SIGTERM (no shared lock or event: a killed process cannot leave
one held).

Under a lease (``WorkerSpec.lease``, watcher/leases.py) the worker fences
itself: it reads its camera's lease every third of the lease's length, tags
every event with its node and epoch, publishes nothing once the lease it last
read has expired (its node stopped renewing it: another node may run the
camera from then on), and stops for good when the lease belongs to another
epoch (another node took the camera).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import cv2
import numpy as np

from events import JSON, MSGPACK, REPO_EVENTS, CameraEvent, CameraStatus, Event, FaceEvent, FaceUnknown, TrackEnded
from broker.client import BrokerAddress, BusClient, BusError, BusMessage
from repo.index import SearchOptions
from repo.store import RepoStore
from repo.sync import SyncOptions
from vision.analyzer import FaceAnalyzer

from .cameras import SIGHTINGS_QUEUE, UNKNOWN_FACES_QUEUE, Camera, event_headers, event_topics, msgpack_topic_for
from .galleries import GalleryFollower
from .leases import CameraLeases, LeaseGrant
from .pipeline import CameraPipeline, PipelineOptions
from .stream import CameraStatus as StreamStatus, StreamOptions, StreamReader, VideoFrame

__all__ = ("WorkerSpec", "run_worker", "CameraWorker", "status_event", "snapshot_jpeg")

log = logging.getLogger(__name__)

# A recent analysed frame goes to the supervisor this often, scaled down (GET /api/v1/cameras/{camera}/frame).
SNAPSHOT_INTERVAL_S = 2.0
SNAPSHOT_MAX_SIDE = 640
SNAPSHOT_QUALITY = 70


@dataclass(slots=True, frozen=True)
class WorkerSpec:
    camera: Camera
    stream: StreamOptions
    pipeline: PipelineOptions
    bus: BrokerAddress
    analyzer_factory: Callable[[], FaceAnalyzer]  # module-level callables (picklable for spawn)
    store_factory: Callable[[], RepoStore]
    parent_pid: int
    log_level: str = "info"
    search: SearchOptions = SearchOptions()
    report_interval_s: float = 1.0
    feed_grouping: bool = False  # also put face.unknown on UNKNOWN_FACES_QUEUE (grouping is enabled)
    sync: SyncOptions = SyncOptions()
    # Sets up the process's logging, given its name (a module-level callable); None: plain text lines.
    log_setup: Callable[[str], None] | None = None
    feed_sightings: bool = False  # also put face events on SIGHTINGS_QUEUE (sightings are enabled)
    lease: LeaseGrant | None = None  # the camera's lease it runs under (None: unfenced)


def status_event(camera_id: str, status: StreamStatus, pid: int | None = None) -> CameraStatus:
    return CameraStatus(camera=camera_id, state=status.state, attempt=status.attempt or None,
                        reason=status.reason or None, pid=pid)


def _is_sighting_event(event: Event) -> bool:
    """face.recognized and face.unknown; track.ended only of a track that had one (it closes its time range)."""
    if isinstance(event, TrackEnded):
        return event.had_sighting
    return isinstance(event, FaceEvent)


def snapshot_jpeg(image: np.ndarray, max_side: int = SNAPSHOT_MAX_SIDE) -> bytes:
    """A BGR frame as a JPEG whose longer side is at most ``max_side`` pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("frame not encodable as JPEG")
    return encoded.tobytes()


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CameraWorker:
    def __init__(self, spec: WorkerSpec, reports: Connection, stop: threading.Event) -> None:
        """``reports``: this worker's end of its pipe to the supervisor (reports up; why it is stopped, when
        the supervisor says, down); ``stop``: set on SIGTERM."""
        self.spec = spec
        self.camera_id = spec.camera.id
        self.reports = reports
        self._reports_lock = threading.Lock()  # written from the decoder and the heartbeat threads
        self.stop = stop
        self.bus = BusClient(spec.bus, client_name=f"watcher-{self.camera_id}")
        self.reader = StreamReader(spec.stream, self._on_status, self.stop)
        self.pipeline: CameraPipeline | None = None
        self.gallery_faces = 0
        self.published = 0
        self.publish_failures = 0
        self.events: dict[str, int] = {}  # published events by type (from the decoder and analysis threads)
        self._events_lock = threading.Lock()
        self._discontinuity = False
        self._snapshot_at = 0.0
        lease = spec.lease
        # Events go out only until this (wall clock): the expiry of the lease as last read.
        self.valid_until = float("inf") if lease is None else lease.expires_at
        self.fenced = 0  # events not published: the lease had expired, or was another node's
        self.run_id = uuid.uuid4().hex  # with seq, what a subscriber sees a gap or a restart by (events/camera.py)
        self.seq = 0
        self._publish_lock = threading.Lock()

    # -- reporting -----------------------------------------------------------------
    def _report(self, kind: str, body: dict[str, Any]) -> None:
        try:
            with self._reports_lock:
                self.reports.send((kind, body))
        except OSError:  # the supervisor is gone; the heartbeat notices and stops us
            log.debug("report dropped", exc_info=True)

    def _publish(self, event: CameraEvent) -> None:
        lease = self.spec.lease
        if lease is not None:
            if time.time() >= self.valid_until:
                self.fenced += 1
                if self.fenced == 1 or self.fenced % 100 == 0:
                    log.warning("camera %s: lease %d not renewed in time; %d event(s) held back", self.camera_id,
                                lease.epoch, self.fenced)
                return
        with self._publish_lock:  # from the decoder and the analysis threads: one sequence, in order
            self.seq += 1
            self._send(event.stamped(run=self.run_id, seq=self.seq, node=lease.node if lease else None,
                                     lease=lease.epoch if lease else None))

    def _send(self, event: CameraEvent) -> None:
        body = event.encode()  # once, for every destination
        try:
            # Never wait for a reconnect: live notifications are worth less than live analysis.
            headers = {"content-type": JSON, **event_headers(self.spec.camera)}
            for topic in event_topics(self.spec.camera):
                self.bus.publish(topic, body, headers, timeout_s=0)
            if self.spec.feed_grouping and isinstance(event, FaceUnknown):
                self.bus.publish(UNKNOWN_FACES_QUEUE, body, headers, timeout_s=0)
            if self.spec.feed_sightings and _is_sighting_event(event):
                # persistent: a broker that keeps queues on disk (RabbitMQ) keeps it across its restart.
                self.bus.publish(SIGHTINGS_QUEUE, body, {**headers, "persistent": "true"}, timeout_s=0)
            if self.spec.camera.settings.msgpack:
                self.bus.publish(msgpack_topic_for(self.camera_id), event.encode(MSGPACK),
                                 {**headers, "content-type": MSGPACK}, timeout_s=0)
            self.published += 1
            with self._events_lock:
                self.events[event.TYPE] = self.events.get(event.TYPE, 0) + 1
        except BusError as exc:
            self.publish_failures += 1
            log.warning("camera %s: event %s not published: %s", self.camera_id, event.TYPE, exc)

    def _snapshot(self, frame: VideoFrame) -> None:
        """Now and then, the frame just analysed for the supervisor (a camera's recent frame)."""
        now = time.monotonic()
        if now - self._snapshot_at < SNAPSHOT_INTERVAL_S:
            return
        self._snapshot_at = now
        try:
            jpeg = snapshot_jpeg(frame.image)
        except (ValueError, cv2.error):
            log.debug("camera %s: no snapshot of frame %d", self.camera_id, frame.index, exc_info=True)
            return
        self._report("frame", {"jpeg": jpeg, "time": frame.wall_time, "index": frame.index})

    def _stop_reason(self) -> str:
        """Why the supervisor stops this worker, when it said (its node stops, the camera moves); "" for the
        operator's stop."""
        try:
            while self.reports.poll():
                kind, reason = self.reports.recv()
                if kind == "stop":
                    return str(reason)
        except (OSError, EOFError, ValueError):
            pass
        return ""

    def _on_status(self, status: StreamStatus) -> None:
        if status.state == "stopped" and not status.reason:
            status = StreamStatus("stopped", status.attempt, self._stop_reason())
        if status.state == "stopped" and self.pipeline is not None:
            # The tracks still open end before the camera's last word. "stopped" comes from the reader's
            # frames() as it ends, on the thread that runs the pipeline, so this is no race with process().
            for ended in self.pipeline.flush():
                self._publish(ended)
        elif status.state == "reconnecting":
            self._discontinuity = True  # tracks do not survive a gap: the analysis thread ends them next
        event = status_event(self.camera_id, status, pid=os.getpid())
        self._report("status", event.to_json())
        self._publish(event)

    def _stats(self) -> dict[str, Any]:
        pipeline = self.pipeline
        with self._events_lock:
            events = dict(self.events)
        stats: dict[str, Any] = {"decoded": self.reader.decoded, "dropped": self.reader.dropped,
                                 "published": self.published, "publish_failures": self.publish_failures,
                                 "fenced": self.fenced,
                                 "gallery_faces": self.gallery_faces, "rss_mib": round(_rss_mib(), 1),
                                 "events": events, "time": time.time()}
        if pipeline is not None:
            s = pipeline.stats
            ms = sorted(s.analysis_ms)
            stats.update(analysed=s.frames, faces=s.faces, embedded=s.embedded, recognized=s.recognized,
                         unknown=s.unknown, suppressed=s.suppressed,
                         analysis_ms_p50=round(ms[len(ms) // 2], 2) if ms else None,
                         analysis_ms_p95=round(ms[int(len(ms) * 0.95)], 2) if ms else None,
                         analysis_ms_histogram=s.latency.as_json())
        return stats

    def _heartbeat(self) -> None:
        """Stats to the supervisor every interval; stop the camera if the supervisor is gone."""
        while not self.stop.wait(self.spec.report_interval_s):
            if os.getppid() != self.spec.parent_pid:  # the supervisor died: do not run orphaned
                self.stop.set()
                break
            self._report("stats", self._stats())
        self._report("stats", self._stats())

    # -- the lease -------------------------------------------------------------------
    def _check_lease(self, leases: CameraLeases, grant: LeaseGrant) -> bool:
        """Read the camera's lease: False when another epoch holds it (this worker must stop)."""
        current = leases.get(self.camera_id)
        if current is None or current.owner != grant.node or current.epoch != grant.epoch:
            self.valid_until = 0.0
            holder = "nobody" if current is None else f"{current.owner} (epoch {current.epoch})"
            log.warning("camera %s: lease %d of node %s is lost to %s; stopping", self.camera_id, grant.epoch,
                        grant.node, holder)
            return False
        self.valid_until = current.expires_at
        return True

    def _guard_lease(self, leases: CameraLeases, grant: LeaseGrant) -> None:
        while not self.stop.wait(grant.ttl_s / 3):
            try:
                if not self._check_lease(leases, grant):
                    self.stop.set()
                    return
            except Exception:  # the database may be away: events stop at the expiry last read
                log.exception("camera %s: lease not read", self.camera_id)

    # -- the loop --------------------------------------------------------------------
    def _on_repo_event(self, message: BusMessage, follower: GalleryFollower) -> None:
        follower.apply(message.body)
        self.gallery_faces = len(follower)

    def _keep_galleries(self, follower: GalleryFollower) -> None:
        """Reload what a lost event left behind: galleries with a gap, and (now and then, and after
        a reconnect of the bus, when events may have been missed) those behind the database."""
        sync = self.spec.sync
        last_check, reconnects = time.monotonic(), self.bus.reconnects
        while not self.stop.wait(sync.gap_grace_s):
            now = time.monotonic()
            check = now - last_check >= sync.reconcile_interval_s or self.bus.reconnects != reconnects
            if check:
                last_check, reconnects = now, self.bus.reconnects
            try:
                follower.maintain(sync, reconcile=check)
            except Exception:  # the database may be away for a moment: the next round tries again
                log.exception("camera %s: galleries not brought up to date", self.camera_id)
            self.gallery_faces = len(follower)

    def run(self) -> None:
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        self.bus.connect(timeout_s=30.0)
        try:
            store = self.spec.store_factory()
            grant = self.spec.lease
            if grant is not None:
                leases = CameraLeases(store)
                if not self._check_lease(leases, grant):  # before anything is published
                    store.close()
                    return
                threading.Thread(target=self._guard_lease, args=(leases, grant), name="lease", daemon=True).start()
            analyzer = self.spec.analyzer_factory()
            camera = self.spec.camera
            follower = GalleryFollower(store, camera.tenant_id, camera.settings.galleries, analyzer.embedder.dim,
                                       analyzer.embedder.model_id, self.spec.search)
            # Subscribe before reading the database, so no change falls in between: the
            # broker's receipt says the subscription is in place before the read starts.
            self.bus.subscribe(REPO_EVENTS, lambda m: self._on_repo_event(m, follower), receipt=True, timeout_s=30.0)
            self.gallery_faces = follower.load()
            threading.Thread(target=self._keep_galleries, args=(follower,), name="galleries", daemon=True).start()
            log.info("camera %s: matching against %d faces in %s", self.camera_id, self.gallery_faces,
                     camera.settings.galleries)
            self.pipeline = CameraPipeline(analyzer, follower, self.spec.pipeline)
            for frame in self.reader.frames():
                if self._discontinuity:
                    for ended in self.pipeline.flush():
                        self._publish(ended)
                    self._discontinuity = False
                for event in self.pipeline.process(frame):
                    self._publish(event)
                self._snapshot(frame)
            store.close()
        finally:
            self.stop.set()
            self.bus.close()


def run_worker(spec: WorkerSpec, reports: Connection) -> None:
    """The process target."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops its workers
    if spec.log_setup is not None:
        spec.log_setup(f"watcher[{spec.camera.id}]")
    else:
        logging.basicConfig(level=spec.log_level.upper(),
                            format=f"%(asctime)s %(levelname)s watcher[{spec.camera.id}] %(name)s: %(message)s")
    cv2.setNumThreads(1)  # one camera per process: parallelism comes from processes
    CameraWorker(spec, reports, stop).run()
