"""Face tracks across frames: IoU association, stable ids, best shot per track.

Greedy matching on IoU is enough for faces (few per frame, little overlap) and
keeps ids stable through short detection gaps (``max_missed`` frames).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vision.geometry import iou_matrix
from vision.records import Face

__all__ = ("TrackerOptions", "Track", "FaceTracker")


@dataclass(slots=True, frozen=True)
class TrackerOptions:
    iou_threshold: float = 0.3
    max_missed: int = 10  # frames a track survives without a detection


@dataclass(slots=True)
class Track:
    id: int
    box: np.ndarray
    first_seen: float
    last_seen: float
    hits: int = 1
    missed: int = 0
    good_frames: int = 0  # frames whose face passed the quality gate
    best: Face | None = None
    best_quality: float = -1.0
    best_time: float = 0.0
    best_frame: object = field(default=None, repr=False)  # the caller's frame of the best shot

    def offer(self, face: Face, frame: object, when: float, min_quality: float) -> bool:
        """Keep ``face`` if it is the best this track has seen; True when kept."""
        quality = face.quality.score if face.quality is not None else 0.0
        if quality < min_quality:
            return False
        self.good_frames += 1
        if quality <= self.best_quality:
            return False
        self.best, self.best_quality, self.best_time, self.best_frame = face, quality, when, frame
        return True


class FaceTracker:
    def __init__(self, options: TrackerOptions) -> None:
        self.options = options
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)

    def update(self, faces: Sequence[Face], when: float) -> tuple[list[tuple[Track, Face]], list[Track]]:
        """Assign this frame's faces (boxes are enough) to tracks.

        Returns (track, face) pairs for every face (new tracks included) and the
        tracks that ended because they went unseen for too long. Best shots are
        the caller's to offer (``Track.offer``), once it has judged the faces.
        """
        live = list(self.tracks.values())
        pairs: list[tuple[Track, Face]] = []
        unmatched = set(range(len(faces)))
        if live and faces:
            iou = iou_matrix(np.stack([t.box for t in live]), np.stack([f.box for f in faces]))
            for flat in np.argsort(-iou, axis=None):
                ti, fi = divmod(int(flat), len(faces))
                if iou[ti, fi] < self.options.iou_threshold:
                    break
                track = live[ti]
                if fi not in unmatched or track.last_seen == when:
                    continue
                unmatched.discard(fi)
                track.box, track.last_seen, track.hits, track.missed = faces[fi].box, when, track.hits + 1, 0
                pairs.append((track, faces[fi]))
        for fi in sorted(unmatched):
            track = Track(next(self._ids), faces[fi].box, when, when)
            self.tracks[track.id] = track
            pairs.append((track, faces[fi]))
        ended = []
        seen = {t.id for t, _ in pairs}
        for track in list(self.tracks.values()):
            if track.id in seen:
                continue
            track.missed += 1
            if track.missed > self.options.max_missed:
                ended.append(self.tracks.pop(track.id))
        return pairs, ended

    def flush(self) -> list[Track]:
        """End every track (the stream stopped)."""
        ended = list(self.tracks.values())
        self.tracks.clear()
        return ended
