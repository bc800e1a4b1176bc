"""Records the face pipeline hands to its callers.

numpy in, numpy out: boxes are float32 ``x1, y1, x2, y2`` in source-image pixels,
points are float32 ``(x, y)`` in the same frame. Empty results are arrays of
shape ``(0, ...)``, never ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ("Detections", "Face", "Quality")


@dataclass(slots=True, frozen=True)
class Detections:
    """Raw detector output for one image: ``boxes`` (N, 4) and ``scores`` (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(slots=True, frozen=True)
class Quality:
    """How usable a face is for recognition.

    ``score`` is sqrt(size x blur) x frontal, each factor in 0..1, and once the
    face is embedded also x ``recognisable`` (from the model's raw embedding
    norm) x ``visible`` (not covered; both 1.0 until then): a caller that wants
    to refuse tiny, blurred, profile or covered faces compares ``score`` (or one
    factor) with its own threshold.
    """

    score: float
    size_px: float  # shorter side of the detection box
    size: float
    sharpness: float  # Laplacian variance over contrast, at the face's native resolution
    blur: float
    yaw_deg: float  # from the pose model or the five points; 0 is frontal
    pitch_deg: float
    frontal: float
    recognisable: float = 1.0  # from the embedding norm; 1.0 until the face is embedded
    norm_ratio: float = 0.0  # raw embedding norm / the model's reference norm (0: not embedded)
    visible: float = 1.0  # 0 for a covered face (vision/quality.py); 1.0 until embedded
    consistency: float = 0.0  # the whole face's similarity to its half-masked views (0: not measured)

    def as_dict(self) -> dict[str, float]:
        return {
            "score": round(self.score, 4),
            "size_px": round(self.size_px, 1),
            "size": round(self.size, 4),
            "sharpness": round(self.sharpness, 2),
            "blur": round(self.blur, 4),
            "yaw_deg": round(self.yaw_deg, 1),
            "pitch_deg": round(self.pitch_deg, 1),
            "frontal": round(self.frontal, 4),
            "recognisable": round(self.recognisable, 4),
            "norm_ratio": round(self.norm_ratio, 4),
            "visible": round(self.visible, 4),
            "consistency": round(self.consistency, 4),
        }


@dataclass(slots=True)
class Face:
    """One face found in an image, filled in stage by stage by the analyzer."""

    box: np.ndarray  # (4,) float32
    det_score: float
    landmarks68: np.ndarray | None = None  # (68, 2)
    kps: np.ndarray | None = None  # (5, 2): eyes, nose, mouth corners
    aligned: np.ndarray | None = None  # (112, 112, 3) BGR uint8
    embedding: np.ndarray | None = None  # (D,) float32, L2-normalised
    embedding_norm: float = 0.0  # the model's raw output norm: short for unrecognisable faces
    quality: Quality | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # position in the image's prominence order (what /detect lists)
    prominence: float = 0.0  # vision/selection.py: relative size x centrality x detection score
    runner_up_prominence: float = 0.0  # the next most prominent face's, 0 when alone

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size_px(self) -> float:
        return min(self.width, self.height)
