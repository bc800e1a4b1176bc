"""What a track has shown of its face, and how much of the false-name rate a decision on it may spend.

A track is decided again each time a better shot arrives. With a rate policy
every decision is held to the policy's FPIR per probe, so a stranger's track
decided k times is named with probability up to k times that rate: the
promise would hold per decision, not per person. Here the rate is spent as
the evidence grows instead:

- a track's evidence is the summed quality of its best ``capacity`` shots
  over ``capacity`` (0..1: full when it holds ``capacity`` perfect shots);
- the first shot is decided on at once; a later decision is made only once
  the evidence grew by ``MIN_GROWTH`` since the last one; each is held to the
  policy's rate times the evidence it added.

The rates of all of a track's decisions sum to at most the policy's rate times
its final evidence (at most 1), so by the union bound a stranger's track is
named with probability at most the policy's rate, however long it is watched.
The bound is per track: a person the tracker loses and finds again is a new
track with a new budget. The price: the first decision, made on one shot, is
held to a stricter rate than a single probe would be (bench/openset.py
measures both sides). A numeric threshold is a fixed cosine, not a rate: it
is the same for every decision, and every new shot is decided on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from repo.calibration import Calibration
from repo.decision import Candidate, Decision, Policy, decide
from vision.embedder import l2_normalise

__all__ = ("MIN_GROWTH", "Search", "TrackEvidence", "TrackVerdict")

# A tenth of a full track's evidence: a decision for each new shot of ordinary quality (>= 0.3 of 3 shots),
# none for shots that barely improve on the ones kept.
MIN_GROWTH = 0.1

# The candidates for a probe (one per subject, any order) and how many faces were compared to find them.
Search = Callable[[np.ndarray], tuple[Sequence[Candidate], int]]


@dataclass(slots=True, frozen=True)
class TrackVerdict:
    decision: Decision
    template: np.ndarray  # the shots combined: what was decided on
    rate: float | None  # the FPIR this decision was held to (None: a fixed threshold)
    shots: int  # how many shots the template combines


@dataclass(slots=True)
class TrackEvidence:
    capacity: int  # shots kept: the best this-many by quality
    shots: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (quality, embedding), best first
    spent: float = 0.0  # the evidence earlier decisions were held to
    decisions: int = 0

    def add(self, quality: float, embedding: np.ndarray) -> None:
        self.shots.append((quality, embedding))
        self.shots.sort(key=lambda shot: -shot[0])
        del self.shots[self.capacity:]

    @property
    def amount(self) -> float:
        return min(1.0, sum(q for q, _ in self.shots) / self.capacity)

    @property
    def quality(self) -> float:
        """The kept shots' mean quality: the calibration band the template is decided in."""
        return float(np.mean([q for q, _ in self.shots])) if self.shots else 0.0

    def template(self) -> np.ndarray:
        """The kept shots combined, each weighed by its quality."""
        weights = np.array([q for q, _ in self.shots], np.float32)
        return l2_normalise((weights[:, None] * np.stack([e for _, e in self.shots])).sum(axis=0))

    def ready(self, policy: Policy) -> bool:
        """Is a (new) decision due? The first always is, however little one shot shows (a track must be
        decided to be reported at all); a later one once the evidence grew by ``MIN_GROWTH``, or with a
        fixed threshold, which spends no rate, for every new shot."""
        if not self.shots:
            return False
        return not self.decisions or policy.rate is None or self.amount - self.spent >= MIN_GROWTH - 1e-9

    def decide(self, search: Search, policy: Policy, calibration: Calibration | None) -> TrackVerdict | None:
        """Decide on the shots so far, spending the rate their growth earned; None when not ``ready``."""
        if not self.ready(policy):
            return None
        amount = self.amount
        held = policy if policy.rate is None else replace(policy, rate=policy.rate * (amount - self.spent))
        template = self.template()
        candidates, compared = search(template)
        verdict = decide(candidates, held, calibration, quality=self.quality, comparisons=compared)
        # Spent once decided: a search that failed spent nothing, and the next shot tries again.
        self.spent, self.decisions = amount, self.decisions + 1
        return TrackVerdict(verdict, template, held.rate, len(self.shots))
