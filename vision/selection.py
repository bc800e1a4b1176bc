"""Which face of an image a single-face operation means.

Verify, enrol, the probe of a search and re-embedding each take "the" face of
a photo. Taking the largest compares the wrong person whenever a bystander
stands closer to the camera; photos are framed on their subject, so the rule
here weighs size, nearness to the centre and detection confidence together
(prominence), and every caller goes through it. A caller who knows better names
the face: by its index in the order ``/detect`` returns (prominence order, the
same ranking), or by a box, matched to the detection it overlaps most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import iou_matrix

__all__ = ("FaceChoice", "FaceChoiceError", "prominence", "prominence_order", "choose", "ambiguous")

# Centrality: a Gaussian of the box centre's distance from the image centre,
# in half-diagonals. At the edge of a landscape frame (0.85 half-diagonals) a
# face counts 0.49 of the same face in the middle: a bystander at the edge must
# be about twice the subject's area to be taken for it.
_CENTRE_SIGMA = 0.7
# Two faces are "comparable" (enrolment asks which one is meant) when the
# second is at least this prominent relative to the first.
AMBIGUOUS_RATIO = 0.7


class FaceChoiceError(ValueError):
    """The named face does not exist in the image."""


@dataclass(slots=True, frozen=True)
class FaceChoice:
    """The face a caller names: ``index`` in prominence order, a ``box`` (x1, y1, x2, y2), or both
    (which must then name the same face)."""

    index: int | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.index is not None and self.index < 0:
            raise FaceChoiceError("face index must be 0 or more")
        if self.box is not None and not (self.box[2] > self.box[0] and self.box[3] > self.box[1]):
            raise FaceChoiceError("face box must be x1, y1, x2, y2 with x2 > x1 and y2 > y1")


def prominence(boxes: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N,) in 0..1: relative size x centrality x detection score."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0,), np.float64)
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    size = sides / max(float(sides.max()), 1e-9)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_diagonal = max(float(np.hypot(width, height)) / 2, 1e-9)
    distance = np.linalg.norm(centres - [width / 2, height / 2], axis=1) / half_diagonal
    centrality = np.exp(-0.5 * (distance / _CENTRE_SIGMA) ** 2)
    ranks: np.ndarray = size * centrality * np.asarray(scores, np.float64).reshape(-1)
    return ranks


def prominence_order(boxes: np.ndarray, scores: np.ndarray, height: int,
                     width: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the boxes, most prominent first (stable for ties), and their prominence in that order."""
    ranks = prominence(boxes, scores, height, width)
    order = np.argsort(-ranks, kind="stable")
    return order, ranks[order]


def choose(boxes: np.ndarray, choice: FaceChoice) -> int:
    """Index (into ``boxes``, already in prominence order) of the face ``choice`` names."""
    if choice.index is not None:
        if choice.index >= len(boxes):
            raise FaceChoiceError(f"face index {choice.index} is out of range: {len(boxes)} face(s) found")
        if choice.box is not None and choose(boxes, FaceChoice(box=choice.box)) != choice.index:
            raise FaceChoiceError(f"face index {choice.index} and the face box name different faces")
        return choice.index
    if choice.box is not None:
        if len(boxes) == 0:
            raise FaceChoiceError("no face found to match the given box")
        overlap = iou_matrix(np.asarray([choice.box], np.float32), np.asarray(boxes, np.float32).reshape(-1, 4))[0]
        best = int(np.argmax(overlap))
        if overlap[best] < 0.3:
            raise FaceChoiceError("no detected face overlaps the given box (IoU 0.3 or more)")
        return best
    return 0


def ambiguous(prominence_of_face: float, runner_up: float) -> bool:
    """True when the runner-up face (0 if none) is comparable to the chosen one."""
    return runner_up > 0 and runner_up >= AMBIGUOUS_RATIO * prominence_of_face
