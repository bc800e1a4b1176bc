"""The data path of one camera, top to bottom: frame -> faces -> tracks -> match -> events.

    boxes  = detector.detect(frame)            whole frame + one of the 2x2 tiles in turn (>= 720p)
    tracks = tracker.update(boxes)             stable ids
    faces  = analyzer.faces_from_boxes(open)   landmarks, aligned crop, quality; tracks still undecided only
    best   = track.offer(face)                 each track keeps its best shot
    due    = undecided tracks with a new best shot, at most every rematch_interval_s
    analyzer.embed(best shots of due)          one batch for all of them (quality gains the
                                               model's own judgement: covered faces drop out)
    shots  = the track's best track_shots embedded shots, combined (quality-weighted mean)
    verdict= decide(galleries.candidates(shots))   repo/decision.py: the rule identify uses too, once
                                               the evidence grew, at the rate it earned (evidence.py)
    events : face.recognized  once per track, then a cool-down per camera and subject
             face.unknown     a track unmatched after unknown_after_frames good frames
             track.ended      every embedded track's final decision, announced or held back

Faces under the size or quality gate (tiny, blurred, profile, covered) are
tracked but never matched, so they can produce no match, right or wrong.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import cv2
import numpy as np

from events import (
    Box, CameraEvent, CandidateRef, DecisionRef, FaceRecognized, FaceUnknown, FrameRef, SubjectRef, TrackEnded,
    encode_vector,
)
from vision.analyzer import FaceAnalyzer
from vision.geometry import crop_box
from vision.records import Face

from repo.calibration import Calibration
from repo.decision import CANDIDATES, Candidate, Decision, Policy
from repo.store import Subject

from .evidence import TrackEvidence
from .galleries import GalleryCandidate
from .stream import VideoFrame
from .latency import LatencyHistogram
from .tracker import FaceTracker, Track, TrackerOptions

__all__ = ("PipelineOptions", "PipelineStats", "Matcher", "CameraPipeline", "crop_jpeg")


@dataclass(slots=True, frozen=True, kw_only=True)
class PipelineOptions:
    """Built by ``camera_options.pipeline_options``: per-camera values default in CameraSettings."""

    camera_id: str
    policy: Policy
    calibration: Calibration | None = None
    min_face_px: float
    min_quality: float = 0.3
    cooldown_s: float
    unknown_after_frames: int
    rematch_interval_s: float = 0.5  # an unmatched track is embedded again at most this often
    attach_crop: bool
    attributes: tuple[str, ...]
    crop_max_px: int = 256
    tiles_per_frame: int = 1  # of the 2x2 tiles scanned on large frames: 0 none, 4 all every frame
    track_shots: int = 3  # a track is named from its best this-many embedded shots, not one lucky frame


class Matcher(Protocol):
    model_id: str

    def candidates(self, embedding: np.ndarray, k: int = 2) -> tuple[list[GalleryCandidate], int]: ...

    def subject(self, subject_pk: str) -> Subject | None: ...


@dataclass(slots=True)
class _Decision:
    """What the pipeline knows about one track beyond the tracker's view."""

    evidence: TrackEvidence  # the track's best embedded shots, and the rate its decisions spent
    tried: Face | None = None  # the best shot last embedded, usable or not
    embedded_at: float = float("-inf")
    embedded: Face | None = None  # the shot that brought the latest decision (its crop goes in events)
    embedded_frame: VideoFrame | None = None  # and the frame it came from
    template: np.ndarray | None = None  # the shots combined: what the latest decision was made on
    verdict: Decision | None = None  # the latest decision over the combined shots
    rate: float | None = None  # ... and the FPIR it was held to (None: a fixed threshold)
    shots: int = 0  # ... and how many shots it combined
    best_similarity: float = -1.0
    recognized: Subject | None = None  # the subject this track was named as
    gallery: str | None = None  # ... in this gallery
    announced: bool = False  # False when the cool-down held the recognition back
    unknown_sent: bool = False


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    faces: int = 0
    embedded: int = 0
    recognized: int = 0
    unknown: int = 0
    suppressed: int = 0  # recognitions inside a cool-down
    analysis_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))  # the latest frames only
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # every frame since the worker started


def crop_jpeg(image: np.ndarray, box: np.ndarray, max_px: int) -> str:
    """The face with some margin, as base64 JPEG."""
    side = int(min(max_px, max(32.0, float(max(box[2] - box[0], box[3] - box[1])) * 1.4)))
    crop, _ = crop_box(image, box, side, side, 1.4, True)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return base64.b64encode(data.tobytes()).decode()


class CameraPipeline:
    def __init__(self, analyzer: FaceAnalyzer, matcher: Matcher, options: PipelineOptions,
                 tracker: TrackerOptions | None = None) -> None:
        self.analyzer = analyzer
        self.matcher = matcher
        self.options = options
        self.tracker = FaceTracker(tracker or TrackerOptions())
        self.decisions: dict[int, _Decision] = {}
        self.announced: dict[str, float] = {}  # subject pk -> when last announced (cool-down)
        self.stats = PipelineStats()

    def process(self, frame: VideoFrame) -> list[CameraEvent]:
        """Analyse one frame; returns the events it caused (maybe none)."""
        started, now = time.perf_counter(), frame.wall_time
        found = self.analyzer.detector.detect(frame.image, tiles=self._tiles())
        faces = [Face(box, float(score)) for box, score in zip(found.boxes, found.scores)]
        pairs, ended = self.tracker.update(faces, now)
        # A decided track costs nothing more than its detection: landmarks,
        # crop and quality (the pose model) only for the tracks still open.
        open_pairs = [(track, face) for track, face in pairs if self._decision(track).recognized is None]
        if open_pairs:
            boxes = np.stack([face.box for _, face in open_pairs])
            scores = np.array([face.det_score for _, face in open_pairs], np.float32)
            for (track, _), face in zip(open_pairs, self.analyzer.faces_from_boxes(frame.image, boxes, scores)):
                track.offer(face, frame, now, self.options.min_quality)
        tracks = [track for track, _ in open_pairs]
        due = [track for track in tracks if self._needs_embedding(track, now)]
        self.analyzer.embed([track.best for track in due if track.best is not None])
        events: list[CameraEvent] = []
        for track in due:
            events += self._match(track, frame)
        for track in tracks:
            events += self._unknown(track, frame)
        for track in ended:
            events += self._ended(track)
        self.stats.frames += 1
        self.stats.faces += len(faces)
        self.stats.embedded += len(due)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stats.analysis_ms.append(elapsed_ms)
        self.stats.latency.observe(elapsed_ms)
        return events

    def _tiles(self) -> list[int] | None:
        """Which 2x2 tiles this frame scans (large frames): a few per frame, in turn.

        Small, distant faces move little between frames and the tracker holds
        them through the frames in between, so scanning one tile per frame
        finds them within four frames at a third of the cost of all four.
        """
        per_frame = self.options.tiles_per_frame
        if per_frame >= 4:
            return None
        start = self.stats.frames * per_frame
        return [(start + i) % 4 for i in range(per_frame)]

    def _decision(self, track: Track) -> _Decision:
        found = self.decisions.get(track.id)
        if found is None:
            found = self.decisions[track.id] = _Decision(TrackEvidence(self.options.track_shots))
        return found

    def _usable(self, face: Face) -> bool:
        quality = face.quality.score if face.quality is not None else 0.0
        return face.size_px >= self.options.min_face_px and quality >= self.options.min_quality

    def _needs_embedding(self, track: Track, now: float) -> bool:
        decision = self._decision(track)
        best = track.best
        return (decision.recognized is None and best is not None and best is not decision.tried
                and self._usable(best) and now - decision.embedded_at >= self.options.rematch_interval_s)

    def _match(self, track: Track, frame: VideoFrame) -> list[CameraEvent]:
        decision = self.decisions[track.id]
        face = track.best
        assert face is not None and face.embedding is not None  # _needs_embedding and embed() made sure
        assert isinstance(track.best_frame, VideoFrame)
        decision.tried, decision.embedded_at = face, frame.wall_time
        quality = face.quality.score if face.quality is not None else 0.0
        # The model's verdict may have lowered it: a covered shot must not keep out a better frame.
        track.best_quality = quality
        if quality < self.options.min_quality:
            return []  # the embedding model finds it unrecognisable (covered, smeared): no evidence either way
        decision.evidence.add(quality, face.embedding)
        found = decision.evidence.decide(self._search, self.options.policy, self.options.calibration)
        if found is None:
            return []  # no better than the shots already decided on
        verdict = found.decision
        decision.embedded, decision.embedded_frame = face, track.best_frame
        decision.template, decision.verdict, decision.rate = found.template, verdict, found.rate
        decision.shots = found.shots
        weighed = [c.similarity for c in (verdict.best, *verdict.refuted) if c is not None]
        decision.best_similarity = max([decision.best_similarity, *weighed])
        if verdict.match is None:
            return []
        key: GalleryCandidate = verdict.match.key
        subject = self.matcher.subject(key.subject_pk)
        if subject is None:  # removed since; its event is on its way: undecided, as if never matched
            decision.verdict = replace(verdict, match=None, reason="removed")
            return []
        decision.recognized, decision.gallery = subject, key.gallery  # one event per track
        last = self.announced.get(subject.pk)
        if last is not None and frame.wall_time - last < self.options.cooldown_s:
            self.stats.suppressed += 1  # still visible: track.ended carries it
            return []
        decision.announced = True
        self.announced[subject.pk] = frame.wall_time
        self.stats.recognized += 1
        return [self._event(FaceRecognized, track, decision, frame)]

    def _search(self, template: np.ndarray) -> tuple[list[Candidate], int]:
        # Three: a runner-up is still there when the best one is refuted by a correction.
        found, compared = self.matcher.candidates(template, CANDIDATES)
        return [Candidate(c, c.similarity, c.negative_similarity) for c in found], compared

    def _unknown(self, track: Track, frame: VideoFrame) -> list[CameraEvent]:
        """A track embedded, matched by nobody, and seen well enough, long enough."""
        decision = self.decisions[track.id]
        if (decision.recognized is not None or decision.unknown_sent or decision.verdict is None
                or track.good_frames < self.options.unknown_after_frames):
            return []
        decision.unknown_sent = True
        self.stats.unknown += 1
        return [self._event(FaceUnknown, track, decision, frame)]

    def _ended(self, track: Track) -> list[CameraEvent]:
        """The final word on a track that was matched at all: what was decided, and whether it was announced."""
        decision = self.decisions.pop(track.id, None)
        if decision is None or decision.verdict is None:
            return []
        subject = None if decision.recognized is None else self._subject_ref(decision.recognized, decision.gallery)
        return [TrackEnded(
            camera=self.options.camera_id, track=track.id, first_seen=track.first_seen, last_seen=track.last_seen,
            shots=decision.shots, subject=subject, announced=decision.announced,
            unknown_sent=decision.unknown_sent, decision=self._decision_ref(decision.verdict, decision.rate))]

    @staticmethod
    def _subject_ref(subject: Subject, gallery: str | None) -> SubjectRef:
        return SubjectRef(subject.id, subject.name, gallery or "", subject.pk)

    def _decision_ref(self, verdict: Decision, rate: float | None) -> DecisionRef:
        def candidate(found: Candidate | None) -> CandidateRef | None:
            if found is None:
                return None
            key: GalleryCandidate = found.key
            subject = self.matcher.subject(key.subject_pk)
            return CandidateRef(None if subject is None else self._subject_ref(subject, key.gallery),
                                round(found.similarity, 4))
        return DecisionRef(matched=verdict.match is not None, reason=verdict.reason,
                           threshold=round(verdict.threshold, 4), margin=round(verdict.margin, 4),
                           best=candidate(verdict.best), runner_up=candidate(verdict.runner_up),
                           policy=self.options.policy.describe(), rate=None if rate is None else float(f"{rate:.3g}"))

    def _event(self, kind: type[FaceRecognized] | type[FaceUnknown], track: Track, decision: _Decision,
               frame: VideoFrame) -> FaceRecognized | FaceUnknown:
        """The event for the track's embedded best shot, decided on ``frame``."""
        face, shot, verdict = decision.embedded, decision.embedded_frame, decision.verdict
        assert face is not None and shot is not None and verdict is not None
        described = self._decision_ref(verdict, decision.rate)
        height, width = shot.image.shape[:2]
        attributes = None
        if self.options.attributes:
            self.analyzer.add_attributes(shot.image, [face], self.options.attributes)
            attributes = {name: face.attributes[name] for name in self.options.attributes}
        common: dict[str, Any] = dict(
            camera=self.options.camera_id, track=track.id, box=Box.of(face.box), det_score=round(face.det_score, 4),
            quality=round(face.quality.score, 4) if face.quality else 0.0,
            frame=FrameRef(shot.index, round(shot.stream_time_s, 3), shot.wall_time, width, height),  # the best shot
            analysed_frame_time=frame.wall_time, first_seen=track.first_seen, shots=decision.shots,
            decision=described, runner_up=described.runner_up, margin=described.margin,
            threshold=described.threshold,
            # The track's combined shots, as decided on: a steadier face for grouping and for searching
            # sightings by face than any one shot.
            embedding=encode_vector(np.asarray(decision.template, np.float32)), model_id=self.matcher.model_id,
            crop=crop_jpeg(shot.image, face.box, self.options.crop_max_px) if self.options.attach_crop else None,
            attributes=attributes)
        if kind is FaceRecognized:
            assert decision.recognized is not None and verdict.match is not None
            return FaceRecognized(subject=self._subject_ref(decision.recognized, decision.gallery),
                                  similarity=round(verdict.match.similarity, 4), **common)
        return FaceUnknown(best_similarity=round(decision.best_similarity, 4), **common)

    def flush(self) -> list[CameraEvent]:
        """The stream ended or jumped: every track ends here, with its ``track.ended`` (which closes the time
        range of its sighting), and the tracker starts afresh."""
        events: list[CameraEvent] = []
        for track in self.tracker.flush():
            events += self._ended(track)
        self.decisions.clear()
        return events

