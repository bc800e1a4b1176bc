"""The parts events share: a box, a frame, a subject, a decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ("Box", "FrameRef", "SubjectRef", "CandidateRef", "DecisionRef")


@dataclass(frozen=True, slots=True)
class Box:
    """A face's box in pixels of the image or frame it was found in: the one shape of every box the API
    and the events show (``/detect``'s has the detector's ``probability`` beside it)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @classmethod
    def of(cls, corners: Sequence[float] | np.ndarray) -> Box:
        """From the pipeline's [x1, y1, x2, y2], rounded to a tenth of a pixel."""
        x1, y1, x2, y2 = (round(float(v), 1) for v in corners[:4])
        return cls(x1, y1, x2, y2)

    def corners(self) -> list[float]:
        return [self.x_min, self.y_min, self.x_max, self.y_max]


@dataclass(frozen=True, slots=True)
class FrameRef:
    """The frame a face was seen in: its place in the stream, its wall-clock time and its size (what a
    box is relative to)."""

    index: int
    stream_time: float
    wall_time: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class SubjectRef:
    """An enrolled subject as events name it: its id and name in a gallery; ``pk``, the key that stays
    the same through renames and merges."""

    id: str
    name: str
    gallery: str
    pk: str | None = None


@dataclass(frozen=True, slots=True)
class CandidateRef:
    """A subject weighed in a decision and its similarity (``subject`` None: removed since)."""

    subject: SubjectRef | None
    similarity: float


@dataclass(frozen=True, slots=True)
class DecisionRef:
    """Everything that led to a decision (repo/decision.py): an app can show why, and a wrong name
    cannot hide."""

    matched: bool
    reason: str  # matched | no_candidates | low_quality | below_threshold | ambiguous | refuted | removed
    threshold: float
    margin: float
    best: CandidateRef | None
    runner_up: CandidateRef | None
    policy: dict[str, Any]
    # The FPIR this decision was held to: on a camera, the policy's rate times the evidence the decision
    # added (watcher/evidence.py); None for a fixed threshold.
    rate: float | None = None
