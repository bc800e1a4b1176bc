"""Face detection: the Ultra-Light RFB-320 model, with optional tiling.

The default model bakes its prior boxes into the graph, so ``boxes`` come out
already in corner form and normalised to 0..1 (design.md 6); there is nothing
to decode, only a threshold and non-maximum suppression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from .blob import to_blob
from .errors import ModelLoadError
from .geometry import nms
from .records import Detections

__all__ = ("Detector", "DetectorOptions", "UltraLightDetector")


@dataclass(slots=True, frozen=True)
class DetectorOptions:
    input_width: int = 320
    input_height: int = 240
    mean: float = 127.0
    std: float = 128.0
    rgb: bool = True
    score_threshold: float = 0.7
    nms_iou: float = 0.3
    # Drop a box lying more than this fraction inside a better-scored one.
    nms_containment: float = 0.7
    # Frames whose shorter side is at least this are also scanned as 2x2 tiles,
    # which finds faces down to about 36 px in 720p instead of 56 px. 0 = never.
    tile_min_side: int = 720
    tile_overlap: float = 0.2
    # A tile only adds faces the whole-frame pass is too coarse for: faces that
    # would measure under this many model-input pixels there. Larger tile hits
    # are mostly texture seen too close (measured on faces/probe/obama_and_biden.jpg).
    tile_max_face_input_px: float = 40.0
    min_face_px: float = 0.0


class Detector(Protocol):
    options: "DetectorOptions"

    def detect(self, image: np.ndarray, tiles: Sequence[int] | None = None) -> Detections:
        """Faces in one BGR image. ``tiles``: which of the 2x2 tiles (0-3) to scan
        besides the whole frame when tiling applies; None = all of them."""
        ...


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")


class UltraLightDetector:
    """Detector with outputs ``scores`` (N, A, 2) and ``boxes`` (N, A, 4) in 0..1."""

    def __init__(self, session: ort.InferenceSession, options: DetectorOptions) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        h, w = inp.shape[2], inp.shape[3]
        if isinstance(h, int) and isinstance(w, int) and (h, w) != (options.input_height, options.input_width):
            raise ModelLoadError(
                f"detector model input is {w}x{h} but the config says "
                f"{options.input_width}x{options.input_height}"
            )
        outputs = {o.name for o in session.get_outputs()}
        if not {"scores", "boxes"} <= outputs:
            raise ModelLoadError(f"detector model must output 'scores' and 'boxes', has {sorted(outputs)}")
        self.options = options

    def _run(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        resized = np.stack(
            [cv2.resize(c, (o.input_width, o.input_height), interpolation=cv2.INTER_LINEAR) for c in crops]
        )
        scores, boxes = self.session.run(["scores", "boxes"],
                                         {self.input_name: to_blob(resized, o.mean, o.std, rgb=o.rgb)})
        return scores[:, :, 1], boxes

    def _regions(self, height: int, width: int, tiles: Sequence[int] | None) -> list[tuple[int, int, int, int]]:
        """The whole frame, plus overlapping 2x2 tiles (all, or those named) for large frames."""
        regions = [(0, 0, width, height)]
        o = self.options
        if o.tile_min_side and min(height, width) >= o.tile_min_side:
            tw = int(width / 2 * (1 + o.tile_overlap))
            th = int(height / 2 * (1 + o.tile_overlap))
            corners = [(x0, y0) for y0 in (0, height - th) for x0 in (0, width - tw)]
            for index in range(4) if tiles is None else tiles:
                x0, y0 = corners[index % 4]
                regions.append((x0, y0, x0 + tw, y0 + th))
        return regions

    def detect(self, image: np.ndarray, tiles: Sequence[int] | None = None) -> Detections:
        """Faces in one BGR image, best score first (``tiles``: see ``Detector``)."""
        check_image(image)
        height, width = image.shape[:2]
        regions = self._regions(height, width, tiles)
        scores, boxes = self._run([image[y0:y1, x0:x1] for x0, y0, x1, y1 in regions])
        all_boxes, all_scores = [], []
        full_frame_scale = min(self.options.input_width / width, self.options.input_height / height)
        for index, ((x0, y0, x1, y1), region_scores, region_boxes) in enumerate(zip(regions, scores, boxes)):
            keep = region_scores >= self.options.score_threshold
            if not keep.any():
                continue
            b = region_boxes[keep] * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float32)
            b += np.array([x0, y0, x0, y0], np.float32)
            if index > 0:
                side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * full_frame_scale
                small = side < self.options.tile_max_face_input_px
                b, keep = b[small], np.flatnonzero(keep)[small]
            all_boxes.append(b)
            all_scores.append(region_scores[keep])
        if not all_boxes:
            return Detections.empty()
        boxes_px = np.concatenate(all_boxes)
        np.clip(boxes_px, 0, [width, height, width, height], out=boxes_px)
        scores_all = np.concatenate(all_scores).astype(np.float32)
        sizes = np.minimum(boxes_px[:, 2] - boxes_px[:, 0], boxes_px[:, 3] - boxes_px[:, 1])
        valid = sizes >= max(self.options.min_face_px, 2.0)
        boxes_px, scores_all = boxes_px[valid], scores_all[valid]
        keep_idx = nms(boxes_px, scores_all, self.options.nms_iou, self.options.nms_containment)
        return Detections(boxes_px[keep_idx].astype(np.float32), scores_all[keep_idx])
