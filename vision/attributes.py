"""Per-face attribute models of the default pack, each run only on request.

Every class has a ``name`` and ``predict(image, faces) -> list[value]`` that
runs all faces of one image in one model call (batch-first). Crop rules and
normalisation follow how the models were published (the pack's JavaScript);
the meaning of the outputs was checked on labelled photos in
tests/integration/test_attributes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np
import onnxruntime as ort

from .blob import to_blob
from .geometry import crop_box
from .records import Face

__all__ = (
    "AttributeModel",
    "AgeModel",
    "GenderModel",
    "PoseModel",
    "LivenessModel",
    "ExpressionModel",
    "EyesModel",
    "EXPRESSIONS",
)

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Class order of fr_expression.onnx (the common FER-2013 order).
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class AttributeModel(Protocol):
    name: str

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]: ...


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    probabilities: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return probabilities


def _crops(image: np.ndarray, faces: Sequence[Face], size: int, scale: float, square: bool = False) -> np.ndarray:
    return np.stack([crop_box(image, f.box, size, size, scale, square)[0] for f in faces])


class _Session:
    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {self.input_name: blob})))


def _ssr_merge(out: dict[str, np.ndarray], scale: float) -> np.ndarray:
    """SSR-Net's soft stagewise regression, vectorised over the batch."""
    stages = 3
    value = np.zeros(len(out["prob_stage_1"]), np.float64)
    denom = np.ones_like(value)
    for k in range(1, stages + 1):
        probs = out[f"prob_stage_{k}"]
        delta = out[f"stage{k}_delta_k"][:, 0]
        offset = out[f"index_offset_stage{k}"]
        denom = denom * (stages * (1 + delta))
        value += ((np.arange(stages) + offset) * probs).sum(axis=1) / denom
    return value * scale


class _SsrModel(_Session):
    scale = 1.0
    rgb = True
    crop_scale = 1.4

    def predict_raw(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        crops = _crops(image, faces, 64, self.crop_scale)
        return _ssr_merge(self.run(to_blob(crops, IMAGENET_MEAN, IMAGENET_STD, rgb=self.rgb)), self.scale)


class AgeModel(_SsrModel):
    name = "age"
    scale = 101.0

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        return [round(float(a), 1) for a in self.predict_raw(image, faces)]


class GenderModel(_SsrModel):
    name = "gender"
    # Unlike the age model, this one wants BGR and a tighter crop: on the 11
    # enrolment photos of ../shared/data (2 women), RGB called both women male
    # at every crop scale; BGR at 1.2 scored women 0.13/0.40 and men >= 0.84.
    rgb = False
    crop_scale = 1.2

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        values = self.predict_raw(image, faces)
        # 1 = male, 0 = female; the distance from 0.5 is a rough confidence.
        return [
            {"value": "male" if v >= 0.5 else "female", "score": round(float(min(max(v, 0.0), 1.0)), 3)}
            for v in values
        ]


class PoseModel(_Session):
    """Hopenet-style: 66 bins of 3 degrees for yaw, pitch and roll."""

    name = "pose"
    rgb = False  # the pack's own code feeds BGR

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        crops = _crops(image, faces, 224, 1.5)
        out = list(self.run(to_blob(crops, IMAGENET_MEAN, IMAGENET_STD, rgb=self.rgb)).values())
        bins = np.arange(66, dtype=np.float32)
        yaw, pitch, roll = ((_softmax(o) * bins).sum(axis=1) * 3 - 99 for o in out[:3])
        return [
            {"yaw": round(float(y), 1), "pitch": round(float(p), 1), "roll": round(float(r), 1)}
            for y, p, r in zip(yaw, pitch, roll)
        ]


class LivenessModel(_Session):
    """MiniFASNet-style anti-spoofing on a wide (2.7x) crop, raw 0..255 input."""

    name = "liveness"
    real_class = 0
    # BGR like the Silent-Face models it resembles: live photos of real people
    # in the shared data score higher that way than with RGB.
    rgb = False

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        crops = _crops(image, faces, 128, 2.7)
        (out,) = self.run(to_blob(crops, 0.0, 1.0, rgb=self.rgb)).values()
        probs = _softmax(out)[:, self.real_class]
        return [{"score": round(float(p), 4)} for p in probs]


class ExpressionModel(_Session):
    name = "expression"

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        crops = _crops(image, faces, 224, 1.2)
        (out,) = self.run(to_blob(crops, 0.0, 255.0, rgb=True)).values()
        probs = _softmax(out)
        return [
            {"value": EXPRESSIONS[int(np.argmax(p))], "score": round(float(p.max()), 4)} for p in probs
        ]


class EyesModel(_Session):
    """Open/closed per eye from 24x24 grey crops around the landmark eye points."""

    name = "eyes"
    open_class = 1

    def _eye_crop(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        # points: the six landmarks of one eye; crop a square 1.6x the eye width.
        centre = points[[1, 2, 4, 5]].mean(0)
        side = max(float(points[3, 0] - points[0, 0]) * 1.6, 4.0)
        box = np.array([centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2])
        crop, _ = crop_box(image, box, 24, 24)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> list[Any]:
        crops = []
        for face in faces:
            if face.landmarks68 is None:
                raise ValueError("eyes needs the 68 landmarks of each face")
            crops.append(self._eye_crop(image, face.landmarks68[36:42]))
            crops.append(self._eye_crop(image, face.landmarks68[42:48]))
        blob = np.stack(crops)[:, None].astype(np.float32) / 255.0
        (out,) = self.run(blob).values()
        open_prob = _softmax(out)[:, self.open_class].reshape(-1, 2)
        return [
            {"left_open": bool(left >= 0.5), "right_open": bool(right >= 0.5),
             "left_score": round(float(left), 4), "right_score": round(float(right), 4)}
            for left, right in open_prob
        ]
