"""A camera's events, on ``/topic/watcher.<camera>`` (and the tenant's copy): what its worker saw and
decided, and how its stream is.

Each carries where it was made: ``node`` and ``lease`` (the fencing epoch) under a lease, and
``run`` + ``seq``: ``seq`` counts the camera's events 1, 2, 3... within one run of its worker (``run``, an
id made when the worker starts), so a subscriber sees a gap as a jump in ``seq`` and a restart or a
move to another node as a new ``run``. The worker sets these four as it publishes (``stamped``). A status
that is not the worker's own (``restarting`` and a killed worker's ``stopped`` from its supervisor,
``node_down`` from the node taking the camera over) has ``run`` "" and ``seq`` 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from .codec import Event
from .records import Box, CandidateRef, DecisionRef, FrameRef, SubjectRef

__all__ = ("CameraEvent", "FaceEvent", "FaceRecognized", "FaceUnknown", "TrackEnded", "CameraStatus",
           "camera_topic", "ALL_CAMERAS_TOPIC")

C = TypeVar("C", bound="CameraEvent")


def camera_topic(camera_id: str) -> str:
    return f"/topic/watcher.{camera_id}"


ALL_CAMERAS_TOPIC = camera_topic("*")  # every camera's events (a topic pattern to subscribe to)


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraEvent(Event):
    camera: str
    node: str | None = None
    lease: int | None = None
    run: str = ""
    seq: int = 0

    def stamped(self: C, *, run: str, seq: int, node: str | None, lease: int | None) -> C:
        return replace(self, run=run, seq=seq, node=node, lease=lease)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceEvent(CameraEvent):
    """A track's face, decided: its embedded best shot (``box`` in ``frame``), the decision, and the
    track's combined embedding (float32, base64) that it was made on."""

    track: int
    box: Box
    det_score: float
    quality: float
    frame: FrameRef  # the best shot's frame
    analysed_frame_time: float  # the wall time of the frame whose analysis decided it
    first_seen: float
    shots: int
    decision: DecisionRef
    # decision's, repeated for apps that read one level:
    runner_up: CandidateRef | None
    margin: float
    threshold: float
    embedding: str | None = None
    model_id: str = ""
    crop: str | None = None  # JPEG, base64 (camera setting attach_crop)
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceRecognized(FaceEvent):
    TYPE = "face.recognized"

    subject: SubjectRef
    similarity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceUnknown(FaceEvent):
    TYPE = "face.unknown"

    best_similarity: float  # to whoever it resembled most, though not enough to be named
    # Always null as a camera sends it: grouping places the face afterwards, and its group.created /
    # group.grown names this event's id and the group (the sighting records it). Kept for apps that read it.
    group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackEnded(CameraEvent):
    """The final word on every track that was embedded: what was decided, and whether it was announced
    (a recognition the cool-down held back has ``announced`` false: it is still visible here)."""

    TYPE = "track.ended"

    track: int
    first_seen: float
    last_seen: float
    shots: int
    subject: SubjectRef | None
    announced: bool
    unknown_sent: bool
    decision: DecisionRef

    @property
    def had_sighting(self) -> bool:
        """It closes the time range of a face.recognized or face.unknown sent for the track."""
        return self.announced or self.unknown_sent


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraStatus(CameraEvent):
    TYPE = "camera.status"

    state: str  # starting | running | reconnecting | failed | restarting | stopped | node_down
    attempt: int | None = None
    reason: str | None = None
    pid: int | None = None  # the worker's process
    restart_in_s: float | None = None  # restarting: when
    taken_over_by: str | None = None  # node_down: the node that runs the camera now

