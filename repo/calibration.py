"""Calibration: impostor similarity quantiles per probe-quality band, for one embedding model.

Measured by ``fit_calibration`` on impostor pairs (probe and gallery face of
different people), probes at original quality and degraded as cameras
deliver them; bench/calibrate.py runs it on LFW View 1 and writes the file
that ships in repo/calibrations/ for the default model pack. repo/decision.py
reads thresholds from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ("Calibration", "fit_calibration", "load_calibration", "shipped_calibration", "MIN_EXCEEDANCES")

# A quantile is measured only where at least this many impostor pairs lie beyond
# it (a FAR of 1e-6 needs 25 million pairs); deeper ones are extrapolated.
MIN_EXCEEDANCES = 25


@dataclass(slots=True, frozen=True)
class Calibration:
    """Impostor similarity quantiles per probe-quality band, for one embedding model.

    ``thresholds[b][i]`` is the similarity that impostor pairs whose probe
    quality lies in band ``b`` (``quality_edges[b] <= q < quality_edges[b+1]``)
    exceed with probability ``10 ** log10_far[i]``.
    """

    model_id: str
    quality_edges: tuple[float, ...]
    log10_far: tuple[float, ...]  # descending: -1, -2, ...
    thresholds: tuple[tuple[float, ...], ...]
    source: str = ""  # what data it was measured on

    def band(self, quality: float) -> int:
        edges = self.quality_edges
        for b in range(len(edges) - 2, -1, -1):
            if quality >= edges[b]:
                return b
        return 0  # below the lowest edge: the lowest band's (highest) thresholds

    def threshold(self, far: float, quality: float) -> float:
        """Similarity an impostor of this probe quality exceeds with probability ``far``."""
        x = math.log10(min(max(far, 1e-300), 1.0))
        xs, ys = self.log10_far, self.thresholds[self.band(quality)]
        if x >= xs[0]:
            return float(ys[0])
        for i in range(1, len(xs)):
            if x >= xs[i]:
                t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
                return float(ys[i - 1] + t * (ys[i] - ys[i - 1]))
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])  # per decade, negative x: threshold rises
        return float(min(1.0, ys[-1] + slope * (x - xs[-1])))

    def as_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "quality_edges": list(self.quality_edges), "log10_far": list(self.log10_far),
                "thresholds": [list(t) for t in self.thresholds], "source": self.source}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        edges = tuple(float(v) for v in data["quality_edges"])
        xs = tuple(float(v) for v in data["log10_far"])
        rows = tuple(tuple(float(v) for v in row) for row in data["thresholds"])
        if len(rows) != len(edges) - 1 or any(len(r) != len(xs) for r in rows) or len(xs) < 2:
            raise ValueError("calibration: one row of thresholds per quality band, one value per log10_far")
        if any(b <= a for a, b in zip(xs[1:], xs)):
            raise ValueError("calibration: log10_far must descend")
        return cls(str(data["model_id"]), edges, xs, rows, str(data.get("source", "")))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=1) + "\n")


def load_calibration(path: Path) -> Calibration:
    try:
        return Calibration.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"calibration {path}: {exc}") from None


def shipped_calibration(model_id: str) -> Calibration | None:
    """The calibration that ships with facewatch for ``model_id``, if any."""
    for entry in resources.files("repo").joinpath("calibrations").iterdir():
        if entry.name.endswith(".json"):
            calibration = Calibration.from_json(json.loads(entry.read_text()))
            if calibration.model_id == model_id:
                return calibration
    return None


def _extrapolate(xs: list[float], ys: list[float], x: float) -> float:
    """Beyond the deepest measured quantile, along the steepest of the last two measured segments:
    the far tail of impostor scores is heavier than a Gaussian's (look-alikes), so err high."""
    slopes = [(ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1]) for i in range(max(1, len(xs) - 2), len(xs))]
    return min(1.0, ys[-1] + min(slopes) * (x - xs[-1]))  # x and the slopes are negative: min is steepest


def fit_calibration(model_id: str, impostor_scores: list[np.ndarray], quality_edges: tuple[float, ...],
                    log10_far: tuple[float, ...], source: str) -> Calibration:
    """``impostor_scores[b]``: every impostor similarity of probes in quality band ``b``.

    Each band's quantiles are measured down to the deepest FAR with
    MIN_EXCEEDANCES pairs beyond it and extrapolated below that. A band is
    never more lenient than a better-quality band: where the data says a
    worse face draws impostors no closer, the better band's threshold holds.
    """
    rows: list[list[float]] = []
    for scores in impostor_scores:
        scores = np.asarray(scores, np.float64)
        measured_x: list[float] = []
        measured_y: list[float] = []
        deepest = MIN_EXCEEDANCES / max(len(scores), 1)
        for x in log10_far:
            far = 10.0 ** x
            if far < deepest:
                break
            k = int(math.floor(far * len(scores)))  # this many impostors reach the threshold (>=)
            top = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th highest
            measured_x.append(x)
            measured_y.append(float(top))
        if len(measured_x) < 2:
            raise ValueError(f"a quality band has {len(scores)} impostor pairs: too few to calibrate")
        rows.append(measured_y + [_extrapolate(measured_x, measured_y, x) for x in log10_far[len(measured_x):]])
    for b in range(len(rows) - 2, -1, -1):
        rows[b] = [max(a, c) for a, c in zip(rows[b], rows[b + 1])]
    return Calibration(model_id, tuple(quality_edges), tuple(log10_far),
                       tuple(tuple(math.ceil(v * 1e5) / 1e5 for v in row) for row in rows), source)
