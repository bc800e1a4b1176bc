"""The face a single-face operation means: prominence, and faces named by index or box."""

from __future__ import annotations

import numpy as np
import pytest

from vision.selection import FaceChoice, FaceChoiceError, ambiguous, choose, prominence, prominence_order


def test_a_centred_subject_outranks_a_larger_bystander_at_the_edge() -> None:
    # 640x480: the subject (120 px) in the middle, a bystander (150 px) cut by the left edge.
    boxes = np.array([[0, 200, 150, 350], [260, 180, 380, 300]], np.float32)
    scores = np.array([0.99, 0.99], np.float32)
    assert list(prominence_order(boxes, scores, 480, 640)[0]) == [1, 0]
    # The same bystander twice the subject's size wins: prominence is not centrality alone.
    boxes[0] = [0, 100, 300, 400]
    assert list(prominence_order(boxes, scores, 480, 640)[0]) == [0, 1]


def test_comparable_faces_are_ambiguous_a_lone_one_is_not() -> None:
    boxes = np.array([[100, 100, 200, 200], [300, 100, 400, 200]], np.float32)
    first, second = np.sort(prominence(boxes, np.array([0.99, 0.98]), 300, 500))[::-1]
    assert ambiguous(first, second) and not ambiguous(first, 0.0)
    small = np.array([[100, 100, 200, 200], [420, 20, 450, 50]], np.float32)
    first, second = np.sort(prominence(small, np.array([0.99, 0.99]), 300, 500))[::-1]
    assert not ambiguous(first, second)


def test_a_face_named_by_index_or_box() -> None:
    boxes = np.array([[100, 100, 200, 200], [300, 100, 400, 200]], np.float32)
    assert choose(boxes, FaceChoice(index=1)) == 1
    assert choose(boxes, FaceChoice(box=(305, 95, 398, 205))) == 1
    with pytest.raises(FaceChoiceError, match="out of range"):
        choose(boxes, FaceChoice(index=2))
    with pytest.raises(FaceChoiceError, match="overlaps"):
        choose(boxes, FaceChoice(box=(0, 0, 20, 20)))
    # Named both ways, the two must agree.
    assert choose(boxes, FaceChoice(index=1, box=(305, 95, 398, 205))) == 1
    with pytest.raises(FaceChoiceError, match="different faces"):
        choose(boxes, FaceChoice(index=0, box=(305, 95, 398, 205)))
    with pytest.raises(FaceChoiceError):
        FaceChoice(box=(10, 10, 5, 20))
