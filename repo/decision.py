"""Who is this face? The one decision rule of identify and of every camera.

A cosine threshold is a promise about one comparison: at threshold t, a
stranger's face exceeds t against one other face with probability FAR(t).
Identification compares a probe with every face of the galleries, so a
stranger is named when any of n comparisons exceeds t: FPIR = 1 - (1 - FAR)^n,
about n * FAR. A threshold set for FAR 1e-3 names most strangers once the
galleries hold a few thousand faces. And FAR itself depends on the probe:
blurred, small, compressed faces sit closer to everyone (their impostor
scores are higher), so one threshold for all faces cannot keep one promise.

So a decision is asked for as a rate, and the threshold follows from it:
- ``Policy.rate`` is the false-positive identification rate per probe (FPIR)
  for 1:N, or the false accept rate (FAR) per pair for 1:1 (verify);
- the per-comparison FAR for 1:N is ``1 - (1 - FPIR)^(1/n)``, n the number of
  faces compared (the gallery's size);
- the threshold for that FAR is read from a ``Calibration``: impostor score
  quantiles measured per probe-quality band (bench/calibrate.py), extrapolated
  past the deepest measured quantile along the steepest of the last two
  measured segments of score against log10 FAR (so the extrapolated threshold
  errs high).
A numeric ``Policy.threshold`` overrides all that for users who want a fixed
cosine (it is then the same for every probe and every gallery size).
The rate is per decision; a camera, which decides a track several times,
hands each decision its share of the rate (watcher/evidence.py).

Then, over the candidate subjects (best first):
- a probe under ``Policy.min_quality`` (the matching gate, vision/quality.py)
  names nobody;
- a candidate whose stored negatives ("this is not X", repo feedback) are
  closer to the probe than its own faces are is dropped;
- the best remaining candidate is named when its similarity reaches the
  threshold and leads the runner-up by ``Policy.margin``.
The ``Decision`` keeps everything that led to it (threshold, runner-up,
margin, why not) so that an app can show it and a wrong name cannot hide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .calibration import Calibration

__all__ = ("CANDIDATES", "Candidate", "Decision", "Policy", "decide", "per_comparison_far")

# Subjects weighed per decision: the best, a runner-up for the margin, and one more for when the
# best is refuted by a correction (identify, cameras and bench/openset.py alike).
CANDIDATES = 3


def per_comparison_far(fpir: float, comparisons: int) -> float:
    """The FAR per comparison that gives ``fpir`` per probe over ``comparisons`` independent ones."""
    n = max(1, comparisons)
    return -math.expm1(math.log1p(-min(fpir, 1 - 1e-12)) / n)


@dataclass(slots=True, frozen=True)
class Policy:
    """How sure a decision must be: a rate (FPIR for 1:N, FAR for 1:1) or a fixed cosine threshold."""

    rate: float | None = 1e-3
    threshold: float | None = None  # a fixed cosine; overrides ``rate``
    margin: float = 0.0  # the named subject must lead the runner-up by this much
    min_quality: float = 0.0  # a probe under this quality is named as nobody (config quality.min_score)

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.threshold is None):
            raise ValueError("a policy is a rate or a threshold")

    def threshold_for(self, calibration: Calibration | None, quality: float, comparisons: int) -> float:
        """The similarity a match needs for a probe of ``quality`` against ``comparisons`` faces."""
        if self.threshold is not None:
            return self.threshold
        assert self.rate is not None
        if calibration is None:
            raise ValueError("a rate needs a calibration of the embedding model")
        return calibration.threshold(per_comparison_far(self.rate, comparisons), quality)

    def describe(self) -> dict[str, Any]:
        if self.threshold is not None:
            return {"threshold": self.threshold, "margin": self.margin, "min_quality": self.min_quality}
        return {"rate": self.rate, "margin": self.margin, "min_quality": self.min_quality}


@dataclass(slots=True, frozen=True)
class Candidate:
    """One subject's evidence: its best face's similarity and, if it has any, its nearest negative's."""

    key: Any  # whatever names the subject for the caller (a pk, a Subject...)
    similarity: float
    negative_similarity: float | None = None

    @property
    def refuted(self) -> bool:
        """Closer to what this subject was said not to be than to the subject itself."""
        return self.negative_similarity is not None and self.negative_similarity >= self.similarity


@dataclass(slots=True, frozen=True)
class Decision:
    match: Candidate | None  # the subject named, or None
    best: Candidate | None  # the best candidate that was not refuted, named or not
    runner_up: Candidate | None
    threshold: float
    margin: float  # best minus runner-up similarity (best's similarity + 1 when alone)
    reason: str  # matched | no_candidates | low_quality | below_threshold | ambiguous | refuted | removed
    refuted: tuple[Candidate, ...] = field(default=())

    def as_json(self, name: Any = None) -> dict[str, Any]:
        """``name(candidate)`` turns a candidate's key into what the caller shows."""
        def one(c: Candidate | None) -> dict[str, Any] | None:
            if c is None:
                return None
            return {"subject": name(c) if name else c.key, "similarity": round(c.similarity, 4)}
        return {"matched": self.match is not None, "reason": self.reason, "threshold": round(self.threshold, 4),
                "best": one(self.best), "runner_up": one(self.runner_up), "margin": round(self.margin, 4)}


def decide(candidates: Sequence[Candidate], policy: Policy, calibration: Calibration | None, *, quality: float,
           comparisons: int) -> Decision:
    """Name one of ``candidates`` (any order; one per subject) or nobody."""
    threshold = policy.threshold_for(calibration, quality, comparisons)
    ranked = sorted(candidates, key=lambda c: -c.similarity)
    refuted = tuple(c for c in ranked if c.refuted)
    kept = [c for c in ranked if not c.refuted]
    if not kept:
        return Decision(None, None, None, threshold, 0.0, "refuted" if refuted else "no_candidates", refuted)
    best = kept[0]
    runner_up = kept[1] if len(kept) > 1 else None
    margin = best.similarity - (runner_up.similarity if runner_up is not None else -1.0)
    if quality < policy.min_quality:  # too poor a face to name anyone from, whatever it resembles
        return Decision(None, best, runner_up, threshold, margin, "low_quality", refuted)
    if best.similarity < threshold:
        reason = "refuted" if refuted and refuted[0].similarity >= threshold else "below_threshold"
        return Decision(None, best, runner_up, threshold, margin, reason, refuted)
    if margin < policy.margin:
        return Decision(None, best, runner_up, threshold, margin, "ambiguous", refuted)
    return Decision(best, best, runner_up, threshold, margin, "matched", refuted)

