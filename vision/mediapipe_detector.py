"""Optional detector backend: a MediaPipe Tasks face-detector model file.

Not the default: mediapipe ships no face model of its own and its Tasks API
refuses the BlazeFace files other packages carry (design.md 6), so this exists
for users who bring a Tasks ``.tflite`` model. Install the ``mediapipe`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .detector import DetectorOptions, check_image
from .errors import ModelLoadError
from .geometry import nms
from .records import Detections

__all__ = ("MediaPipeDetector", "detections_from_mediapipe")


def detections_from_mediapipe(result: Any, width: int, height: int, options: DetectorOptions) -> Detections:
    """Convert a Tasks ``FaceDetectorResult`` into our ``Detections``."""
    boxes, scores = [], []
    for det in result.detections:
        bb = det.bounding_box
        score = float(det.categories[0].score) if det.categories else 0.0
        if score < options.score_threshold:
            continue
        boxes.append([bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height])
        scores.append(score)
    if not boxes:
        return Detections.empty()
    box_arr = np.clip(np.array(boxes, np.float32), 0, [width, height, width, height]).astype(np.float32)
    score_arr = np.array(scores, np.float32)
    sizes = np.minimum(box_arr[:, 2] - box_arr[:, 0], box_arr[:, 3] - box_arr[:, 1])
    valid = sizes >= max(options.min_face_px, 2.0)
    box_arr, score_arr = box_arr[valid], score_arr[valid]
    keep = nms(box_arr, score_arr, options.nms_iou, options.nms_containment)
    return Detections(box_arr[keep], score_arr[keep])


class MediaPipeDetector:
    def __init__(self, model_file: Path, options: DetectorOptions) -> None:
        try:
            import mediapipe as mp  # noqa: PLC0415 - optional dependency
            from mediapipe.tasks.python import BaseOptions, vision  # noqa: PLC0415
        except ImportError as exc:
            raise ModelLoadError(
                "detector backend 'mediapipe' needs the mediapipe extra: pip install 'facewatch[mediapipe]'"
            ) from exc
        if not model_file.is_file():
            raise ModelLoadError(f"MediaPipe face-detector model {model_file} not found")
        self._mp = mp
        self.options = options
        try:
            self._detector = vision.FaceDetector.create_from_options(
                vision.FaceDetectorOptions(
                    base_options=BaseOptions(model_asset_path=str(model_file)),
                    min_detection_confidence=options.score_threshold,
                    min_suppression_threshold=options.nms_iou,
                )
            )
        except Exception as exc:  # mediapipe raises RuntimeError/ValueError for bad files
            raise ModelLoadError(f"MediaPipe cannot load {model_file}: {exc}") from exc

    def detect(self, image: np.ndarray, tiles: Sequence[int] | None = None) -> Detections:
        """``tiles`` is accepted for the ``Detector`` protocol; this backend does not tile."""
        check_image(image)
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        return detections_from_mediapipe(result, image.shape[1], image.shape[0], self.options)
