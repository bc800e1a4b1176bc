"""The camera pipeline's decisions (once per track, cool-down, unknown, gates), with a scripted analyzer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Unpack

import numpy as np
import pytest

from events import Box, CameraEvent, CandidateRef, FaceRecognized, FaceUnknown, SubjectRef, TrackEnded
from repo.calibration import Calibration
from repo.decision import Policy
from repo.store import Subject
from vision.records import Detections, Face, Quality
from watcher.camera_options import NodeOptions, pipeline_options
from watcher.cameras import CameraSettings
from watcher.galleries import GalleryCandidate
from watcher.pipeline import CameraPipeline, PipelineOptions
from watcher.stream import VideoFrame

IMAGE = np.zeros((360, 640, 3), np.uint8)


def face(x: float, identity: float, size: float = 80, quality: float = 0.9) -> Face:
    f = Face(np.array([x, 50, x + size, 50 + size], np.float32), 0.99)
    f.quality = Quality(quality, size, 1, 100, 1, 0, 0, 1)
    f.aligned = np.full((112, 112, 3), identity, np.uint8)  # the scripted "embedding" reads this back
    return f


class ScriptedAnalyzer:
    """The detector finds the faces scripted for each frame; faces_from_boxes gives
    them back with their quality; embed() encodes who they are."""

    def __init__(self, script: list[list[Face]]) -> None:
        self.script = list(script)
        self.embedded: list[int] = []
        self.described = 0
        self.detector = self
        self._current: dict[tuple[float, ...], Face] = {}

    def detect(self, image: np.ndarray, tiles: Any = None) -> Detections:
        faces = self.script.pop(0) if self.script else []
        self._current = {tuple(f.box.tolist()): f for f in faces}
        if not faces:
            return Detections.empty()
        return Detections(np.stack([f.box for f in faces]), np.array([f.det_score for f in faces], np.float32))

    def faces_from_boxes(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[Face]:
        self.described += len(boxes)
        return [self._current[tuple(box.tolist())] for box in boxes]

    def embed(self, faces: list[Face]) -> None:
        for f in faces:
            assert f.aligned is not None
            f.embedding = np.eye(16, dtype=np.float32)[int(f.aligned[0, 0, 0])]  # one-hot: who it is
            self.embedded.append(int(f.aligned[0, 0, 0]))

    def add_attributes(self, image: np.ndarray, faces: list[Face], names: Any) -> None:
        for f in faces:
            f.attributes.update({n: 42 for n in names})


class Matcher:
    """Identity 1 is 'ada' (similarity 0.9, runner-up bob 0.2); anyone else is nearest to bob (0.1)."""

    model_id = "test-model"
    subjects = {"pk-ada": Subject("pk-ada", "g", "ada", "Ada", {}, 0.0),
                "pk-bob": Subject("pk-bob", "g", "bob", "Bob", {}, 0.0)}

    def candidates(self, embedding: np.ndarray, k: int = 2) -> tuple[list[GalleryCandidate], int]:
        if int(np.argmax(embedding)) == 1:
            return [GalleryCandidate("pk-ada", "f1", 0.9, "staff"), GalleryCandidate("pk-bob", "f2", 0.2, "staff")], 2
        return [GalleryCandidate("pk-bob", "f2", 0.1, "staff")], 2

    def subject(self, subject_pk: str) -> Subject | None:
        return self.subjects.get(subject_pk)


def door_options(**node: Unpack[NodeOptions]) -> PipelineOptions:
    """A camera at CameraSettings' defaults, matching at a fixed cosine of 0.5."""
    return pipeline_options("door", CameraSettings(url="rtsp://door/1"), Policy(rate=None, threshold=0.5),
                            default_min_quality=0.3, **node)


def run(script: list[list[Face]], **options: Any) -> tuple[list[CameraEvent], ScriptedAnalyzer]:
    analyzer = ScriptedAnalyzer(script)
    opts = replace(door_options(), **{"rematch_interval_s": 0.0, "attach_crop": False, **options})
    pipeline = CameraPipeline(analyzer, Matcher(), opts)  # type: ignore[arg-type]
    events: list[CameraEvent] = []
    for index in range(len(script)):
        events += pipeline.process(VideoFrame(IMAGE, index, index / 10, 1000.0 + index))
    return events, analyzer


def test_a_known_face_is_announced_once_per_track_and_no_longer_embedded() -> None:
    events, analyzer = run([[face(100 + i, 1, quality=0.5 + i / 20)] for i in range(8)], cooldown_s=0)
    assert [e.TYPE for e in events] == ["face.recognized"]
    event = events[0]
    assert isinstance(event, FaceRecognized)
    assert event.subject == SubjectRef("ada", "Ada", "staff", "pk-ada")
    assert event.similarity == 0.9 and event.threshold == 0.5 and event.camera == "door"
    assert event.runner_up == CandidateRef(SubjectRef("bob", "Bob", "staff", "pk-bob"), 0.2)
    # The combined shots it was named on, for the sightings' search by face.
    assert event.embedding and event.model_id == "test-model"
    assert event.margin == 0.7 and event.decision.reason == "matched"
    assert analyzer.embedded == [1]  # decided on the first good shot; nothing more to embed
    assert analyzer.described == 1  # nor to describe: a decided track costs only its detection


def test_the_cool_down_holds_back_the_same_subject_on_a_new_track() -> None:
    # Ada, gone long enough for her track to end, then back (a new track) 20 s later.
    script = [[face(100, 1)]] + [[] for _ in range(15)] + [[face(400, 1)]] + [[] for _ in range(12)]
    events, _ = run(script, cooldown_s=30)
    assert [e.TYPE for e in events] == ["face.recognized", "track.ended", "track.ended"]
    # The second recognition was held back, not hidden: its track's summary names Ada, unannounced.
    first, second = events[1], events[2]
    assert isinstance(first, TrackEnded) and isinstance(second, TrackEnded)
    assert first.subject is not None and first.subject.id == "ada" and first.announced is True
    assert second.subject is not None and second.subject.id == "ada" and second.announced is False
    assert second.decision.reason == "matched"
    events, _ = run(script, cooldown_s=5)
    recognized = [e for e in events if isinstance(e, FaceRecognized)]
    assert len(recognized) == 2 and recognized[0].track != recognized[1].track


def test_a_track_is_named_from_its_best_shots_combined() -> None:
    # Two good shots of Ada, then a better shot that the scripted model reads as someone else:
    # the combined template still points at Ada only while her shots outweigh the odd one.
    script = [[face(100, 5, quality=0.5)], [face(101, 1, quality=0.6)], [face(102, 1, quality=0.7)]]
    events, analyzer = run(script, track_shots=3, unknown_after_frames=100)
    assert analyzer.embedded == [5, 1]  # the second shot decided it (0.6 Ada over 0.5 stranger)
    assert [e.TYPE for e in events] == ["face.recognized"]
    assert isinstance(events[0], FaceRecognized) and events[0].shots == 2


def test_an_unknown_track_is_reported_once_after_enough_good_frames() -> None:
    events, _ = run([[face(100 + i, 7, quality=0.9)] for i in range(10)], unknown_after_frames=4)
    assert [e.TYPE for e in events] == ["face.unknown"]
    unknown = events[0]
    assert isinstance(unknown, FaceUnknown)
    assert unknown.best_similarity == 0.1 and unknown.model_id == "test-model"
    best = unknown.decision.best
    assert unknown.decision.reason == "below_threshold"
    assert best is not None and best.subject is not None and best.subject.id == "bob"
    assert unknown.embedding and unknown.group is None and "subject" not in unknown.to_json()


def test_small_blurred_or_profile_faces_are_never_matched() -> None:
    script = [[face(100, 1, size=20), face(300, 1, quality=0.1)] for _ in range(6)]
    events, analyzer = run(script, min_face_px=40, min_quality=0.3)
    assert events == [] and analyzer.embedded == []


def test_rematch_interval_limits_embeddings_of_an_undecided_track() -> None:
    # Quality rises every frame (a new best shot each time); frames are 1 s apart.
    script = [[face(100 + i, 7, quality=0.4 + i / 20)] for i in range(6)]
    _, every = run(script, rematch_interval_s=0.0, unknown_after_frames=100)
    _, spaced = run(script, rematch_interval_s=2.5, unknown_after_frames=100)
    assert len(every.embedded) == 6 and len(spaced.embedded) == 2


def test_crop_and_attributes_are_attached_on_request() -> None:
    image_face = face(100, 1)
    events, _ = run([[image_face]], attach_crop=True, attributes=("age",))
    event = events[0]
    assert isinstance(event, FaceRecognized)
    assert event.crop and event.attributes == {"age": 42}


def test_unknown_reports_the_shot_that_was_embedded_even_when_a_better_one_waits() -> None:
    # The best shot improves every frame but is embedded at most every 100 s: the
    # unknown event must carry the embedded shot (its embedding and its frame).
    script = [[face(100 + i, 7, quality=0.4 + i / 20)] for i in range(5)]
    events, analyzer = run(script, rematch_interval_s=100, unknown_after_frames=3)
    assert analyzer.embedded == [7] and [e.TYPE for e in events] == ["face.unknown"]
    unknown = events[0]
    assert isinstance(unknown, FaceUnknown)
    assert unknown.frame.index == 0 and unknown.box == Box(100.0, 50.0, 180.0, 130.0)
    assert (unknown.frame.width, unknown.frame.height) == (640, 360)  # what the box is relative to


class TileRecorder(ScriptedAnalyzer):
    def __init__(self, frames: int) -> None:
        super().__init__([[] for _ in range(frames)])
        self.asked: list[Any] = []

    def detect(self, image: np.ndarray, tiles: Any = None) -> Detections:
        self.asked.append(tiles)
        return super().detect(image, tiles)


def test_large_frames_scan_the_tiles_in_turn() -> None:
    for per_frame, expected in ((1, [[0], [1], [2], [3], [0]]), (2, [[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]]),
                                (0, [[]] * 5), (4, [None] * 5)):
        analyzer = TileRecorder(5)
        options = door_options(tiles_per_frame=per_frame)
        pipeline = CameraPipeline(analyzer, Matcher(), options)  # type: ignore[arg-type]
        for index in range(5):
            pipeline.process(VideoFrame(IMAGE, index, index / 10, 1000.0 + index))
        assert analyzer.asked == expected, per_frame


class CountingMatcher(Matcher):
    def __init__(self) -> None:
        self.searches = 0

    def candidates(self, embedding: np.ndarray, k: int = 2) -> tuple[list[GalleryCandidate], int]:
        self.searches += 1
        return super().candidates(embedding, k)


def test_a_track_is_decided_again_only_as_its_evidence_grows_and_at_the_rate_it_earned() -> None:
    # A stranger watched for 40 frames, each shot a little better than the last: every one is embedded,
    # but decided on only when the track's evidence grew by a tenth, each time at that share of the rate.
    script = [[face(100 + i, 7, quality=0.6 + i / 100)] for i in range(40)] + [[] for _ in range(15)]
    analyzer, matcher = ScriptedAnalyzer(script), CountingMatcher()
    calibration = Calibration("m", (0.0, 1.0001), (-1.0, -3.0), ((0.2, 0.4),))
    options = replace(door_options(), rematch_interval_s=0.0, attach_crop=False, unknown_after_frames=5,
                      policy=Policy(rate=1e-2), calibration=calibration)
    pipeline = CameraPipeline(analyzer, matcher, options)  # type: ignore[arg-type]
    events: list[CameraEvent] = []
    for index in range(len(script)):
        events += pipeline.process(VideoFrame(IMAGE, index, index / 10, 1000.0 + index))
    # Three shots of three (each adds about 0.2 of the evidence), then one decision per 0.1 gained: 3 more.
    assert len(analyzer.embedded) == 40 and matcher.searches == 6
    unknown, ended = events
    assert isinstance(unknown, FaceUnknown) and isinstance(ended, TrackEnded)
    assert unknown.decision.rate == pytest.approx(1e-2 * 0.62 / 3, rel=1e-2)  # the third shot's share
    assert unknown.decision.policy["rate"] == 1e-2
    assert unknown.frame.index == 2  # the shot that brought the latest decision, not a later one (4)
    assert ended.decision.rate is not None and 1e-3 <= ended.decision.rate < 2e-3 and ended.shots == 3


def test_tracks_still_open_when_the_stream_stops_end_with_their_summary() -> None:
    # Ada and a stranger in view to the last frame (a file at its end, an operator's stop, a reconnect).
    analyzer = ScriptedAnalyzer([[face(100 + i, 1), face(300 + i, 2)] for i in range(8)])
    pipeline = CameraPipeline(analyzer, Matcher(),  # type: ignore[arg-type]
                              replace(door_options(), rematch_interval_s=0.0, attach_crop=False))
    seen = [e for i in range(8) for e in pipeline.process(VideoFrame(IMAGE, i, i / 10, 1000.0 + i))]
    assert sorted(e.TYPE for e in seen) == ["face.recognized", "face.unknown"]
    ended = pipeline.flush()
    assert all(isinstance(e, TrackEnded) and e.last_seen == 1007.0 for e in ended)
    assert sorted(e.track for e in ended if isinstance(e, TrackEnded)) == sorted(
        e.track for e in seen if isinstance(e, FaceRecognized | FaceUnknown))
    assert pipeline.flush() == []  # nothing left: the next frame starts new tracks
