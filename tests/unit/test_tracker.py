from __future__ import annotations

import numpy as np

from vision.records import Face, Quality
from watcher.tracker import FaceTracker, TrackerOptions


def face(x: float, y: float, size: float = 50, quality: float = 0.9) -> Face:
    f = Face(np.array([x, y, x + size, y + size], np.float32), 0.99)
    f.quality = Quality(quality, size, 1, 100, 1, 0, 0, 1)
    return f


def test_ids_are_stable_while_faces_move_and_new_faces_get_new_ids() -> None:
    tracker = FaceTracker(TrackerOptions())
    ids = []
    for step in range(5):
        pairs, ended = tracker.update([face(100 + 5 * step, 100), face(400 - 5 * step, 100)], step)
        ids.append(sorted(t.id for t, _ in pairs))
        assert ended == []
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 2
    pairs, _ = tracker.update([face(100, 100), face(400, 100), face(250, 300)], 5)
    assert len({t.id for t, _ in pairs}) == 3


def test_tracks_survive_short_gaps_and_end_after_max_missed() -> None:
    tracker = FaceTracker(TrackerOptions(max_missed=2))
    (first, _), = tracker.update([face(0, 0)], 0.0)[0]
    assert tracker.update([], 1.0) == ([], [])
    (again, _), = tracker.update([face(2, 2)], 2.0)[0]
    assert again.id == first.id  # one missed frame: same track
    for t in (3.0, 4.0):
        assert tracker.update([], t)[1] == []
    _, ended = tracker.update([], 5.0)
    assert [t.id for t in ended] == [first.id]


def test_best_shot_is_the_highest_quality_face_above_the_gate() -> None:
    tracker = FaceTracker(TrackerOptions())
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    for i, q in enumerate((0.1, 0.6, 0.9, 0.5)):
        (track, f), = tracker.update([face(10 + i, 10, quality=q)], float(i))[0]
        track.offer(f, frames[i], float(i), min_quality=0.3)
    (track,) = tracker.flush()
    assert track.best_quality == 0.9 and track.best_time == 2.0
    assert track.best_frame is frames[2]
    assert track.good_frames == 3  # the 0.1 face did not count
