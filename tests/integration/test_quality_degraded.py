"""The quality gate on faces as cameras deliver them: small and sharp passes, blurred or covered fails.

Degraded copies of real photos, through the analyzer as every caller uses it
(the most prominent face, embedded): the gate is quality.min_score.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from facewatch.config import FacewatchConfig
from vision.analyzer import FaceAnalyzer
from vision.records import Face

LoadImage = Callable[[str], np.ndarray]
PHOTOS = ("faces/enroll/obama/obama.jpg", "faces/enroll/obama/obama2.jpg", "faces/enroll/biden/biden2.jpg",
          "faces/enroll/rose_leslie/img1.jpg", "faces/probe/alex_lacamoire1.jpg", "faces/probe/obama-480p.jpg")


def _face(analyzer: FaceAnalyzer, image: np.ndarray) -> Face | None:
    faces = analyzer.analyze(image, max_faces=1)
    return faces[0] if faces else None


def _at_size(image: np.ndarray, face: Face, side: float) -> np.ndarray:
    scale = side / face.size_px
    return np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8)


@pytest.mark.parametrize("photo", PHOTOS)
def test_small_sharp_passes_blurred_and_covered_fail(config: FacewatchConfig, analyzer: FaceAnalyzer,
                                                     load_image: LoadImage, photo: str) -> None:
    gate = config.quality.min_score
    image = load_image(photo)
    original = _face(analyzer, image)
    assert original is not None and original.quality is not None and original.quality.score >= gate
    # 40 px and sharp, as an SD camera delivers a face at a few metres: the old score (sharpness
    # measured after upscaling into the 112 px crop, size x blur x frontal) refused these.
    small = _at_size(image, original, 40)
    face = _face(analyzer, small)
    assert face is not None and face.quality is not None
    assert face.quality.score >= gate, face.quality
    # The same 40 px face out of focus: gone, or refused.
    blurred = _face(analyzer, np.asarray(cv2.GaussianBlur(small, (0, 0), 3.0), np.uint8))
    assert blurred is None or (blurred.quality is not None and blurred.quality.score < gate), blurred
    # A hand-coloured patch over nose and mouth: the face is there, sharp and frontal, and refused.
    covered = image.copy()
    kps = original.kps
    assert kps is not None
    centre = (kps[2] + (kps[3] + kps[4]) / 2) / 2
    axes = (int(original.width * 0.42), int(original.height * 0.25))
    cv2.ellipse(covered, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, (110, 140, 185), -1)
    hidden = _face(analyzer, covered)
    assert hidden is None or (hidden.quality is not None and hidden.quality.score < gate
                              and hidden.quality.visible < 1.0), hidden
