"""68-point landmarks from a 64x64 grey crop of the detection box."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from .geometry import crop_box

__all__ = ("LandmarkOptions", "Landmarker68")


@dataclass(slots=True, frozen=True)
class LandmarkOptions:
    input_size: int = 64
    scale: float = 1.0  # crop = detection box grown by this factor
    divisor: float = 256.0


class Landmarker68:
    """Outputs 136 values: (x, y) per point, relative to the crop (0..1)."""

    def __init__(self, session: ort.InferenceSession, options: LandmarkOptions) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.options = options

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) points in image pixels for the N ``boxes``; one model call."""
        if len(boxes) == 0:
            return np.zeros((0, 68, 2), np.float32)
        size = self.options.input_size
        crops, regions = [], []
        for box in boxes:
            crop, region = crop_box(image, box, size, size, self.options.scale)
            crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
            regions.append(region)
        blob = (np.stack(crops)[:, None].astype(np.float32)) / self.options.divisor
        (out,) = self.session.run(None, {self.input_name: blob})
        points = out.reshape(len(boxes), 68, 2)
        region_arr = np.stack(regions)
        located: np.ndarray = (points * region_arr[:, None, 2:4] + region_arr[:, None, 0:2]).astype(np.float32)
        return located
