"""The MediaPipe backend's result conversion and its clear errors (mediapipe itself optional)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vision.detector import DetectorOptions
from vision.errors import ModelLoadError
from vision.mediapipe_detector import MediaPipeDetector, detections_from_mediapipe


def _det(x: int, y: int, w: int, h: int, score: float) -> SimpleNamespace:
    return SimpleNamespace(
        bounding_box=SimpleNamespace(origin_x=x, origin_y=y, width=w, height=h),
        categories=[SimpleNamespace(score=score)],
    )


def test_conversion_thresholds_clips_and_suppresses() -> None:
    result = SimpleNamespace(detections=[_det(10, 10, 50, 60, 0.9), _det(12, 12, 50, 60, 0.8),
                                         _det(90, 90, 40, 40, 0.95), _det(0, 0, 30, 30, 0.2)])
    out = detections_from_mediapipe(result, 120, 120, DetectorOptions(score_threshold=0.5, nms_iou=0.3))
    assert len(out) == 2
    np.testing.assert_allclose(out.boxes[0], [90, 90, 120, 120])  # clipped to the image
    np.testing.assert_allclose(out.scores, [0.95, 0.9])


def test_empty_result() -> None:
    out = detections_from_mediapipe(SimpleNamespace(detections=[]), 10, 10, DetectorOptions())
    assert out.boxes.shape == (0, 4)


def test_missing_model_or_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="mediapipe extra|not found"):
        MediaPipeDetector(tmp_path / "face_detector.tflite", DetectorOptions())
