"""What sightings are made of: the records that cross the package's modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ("SubjectRef", "NewSighting", "TrackEnd", "Sighting", "Retention", "SightingFilter", "KINDS",
           "crop_path")

KINDS = ("recognized", "unknown", "erased")  # erased: a sighting of an erased subject, kept as a bare event


def crop_path(sighting_id: str) -> str:
    return f"/api/v1/sightings/{sighting_id}/crop"


@dataclass(slots=True, frozen=True)
class SubjectRef:
    """A subject as a watcher event names it."""

    pk: str | None  # None in events from before subjects carried their pk
    id: str
    name: str
    gallery: str


@dataclass(slots=True, frozen=True)
class NewSighting:
    """One face.recognized or face.unknown, as the writer stores it."""

    event_id: str
    kind: str  # recognized | unknown
    camera: str
    track: int
    first_seen: float  # the track's time range (last_seen grows when track.ended arrives)
    last_seen: float
    seen_at: float  # when the best shot was taken
    subject: SubjectRef | None  # the one named (recognized)
    similarity: float | None  # the named subject's; unknown: the closest subject's
    runner_up: SubjectRef | None  # recognized: the second candidate; unknown: the closest (not named)
    runner_up_similarity: float | None
    threshold: float | None
    margin: float | None
    reason: str | None
    quality: float
    embedding: np.ndarray | None  # float32, L2-normalised: the track's combined shots
    model_id: str | None
    crop: bytes | None  # JPEG


@dataclass(slots=True, frozen=True)
class TrackEnd:
    """track.ended of a track that made a sighting: the end of its time range."""

    camera: str
    track: int
    first_seen: float
    last_seen: float


@dataclass(slots=True, frozen=True)
class Sighting:
    id: str
    seq: int  # the tenant's sequence: dense, in commit order (the catch-up cursor)
    tenant_id: str
    event_id: str
    camera: str
    track: int | None
    first_seen: float
    last_seen: float
    seen_at: float
    stored_at: float
    kind: str
    subject_pk: str | None
    subject_id: str | None
    subject_name: str | None
    gallery: str | None
    group_id: str | None
    similarity: float | None
    runner_up_id: str | None
    runner_up_gallery: str | None
    runner_up_similarity: float | None
    threshold: float | None
    margin: float | None
    reason: str | None
    quality: float
    model_id: str | None
    has_crop: bool
    has_embedding: bool
    relabelled_at: float | None

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        subject = None if self.subject_id is None else {"id": self.subject_id, "name": self.subject_name,
                                                        "gallery": self.gallery}
        runner_up = None if self.runner_up_similarity is None else {
            "subject": None if self.runner_up_id is None else {"id": self.runner_up_id,
                                                               "gallery": self.runner_up_gallery},
            "similarity": rounded(self.runner_up_similarity)}
        return {"id": self.id, "seq": self.seq, "event_id": self.event_id, "camera": self.camera,
                "track": self.track, "first_seen": self.first_seen, "last_seen": self.last_seen,
                "seen_at": self.seen_at, "stored_at": self.stored_at, "decision": self.kind, "subject": subject,
                "group": self.group_id, "similarity": rounded(self.similarity), "runner_up": runner_up,
                "threshold": rounded(self.threshold), "margin": rounded(self.margin), "reason": self.reason,
                "quality": round(self.quality, 4), "model_id": self.model_id,
                "crop": crop_path(self.id) if self.has_crop else None, "embedding": self.has_embedding,
                "relabelled_at": self.relabelled_at}


@dataclass(slots=True, frozen=True)
class Retention:
    """How long a tenant's sightings keep what (seconds; None: for ever). Ages count from ``seen_at``."""

    recognized_s: float | None
    unknown_s: float | None  # also the anonymous rows an erasure leaves
    crop_s: float | None
    embedding_s: float | None

    def as_json(self) -> dict[str, float | None]:
        return {"recognized_s": self.recognized_s, "unknown_s": self.unknown_s, "crop_s": self.crop_s,
                "embedding_s": self.embedding_s}


@dataclass(slots=True, frozen=True)
class SightingFilter:
    """What a listing is narrowed to (all optional)."""

    camera: str | None = None
    subject_pk: str | None = None
    group_id: str | None = None
    kind: str | None = None
    start: float | None = None  # seen_at >= start
    end: float | None = None  # seen_at <= end
    gallery: str | None = None  # named in this gallery (alone: any of its subjects)
    subject_id: str | None = None  # named as a subject of this id (alone: in any gallery)
