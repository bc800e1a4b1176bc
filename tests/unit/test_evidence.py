"""A track's evidence: its decisions together spend at most the policy's rate, whatever the shots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repo.calibration import Calibration
from repo.decision import Candidate, Policy
from watcher.evidence import MIN_GROWTH, TrackEvidence

CAL = Calibration("m", (0.0, 0.5, 1.0001), (-1.0, -2.0, -3.0), ((0.20, 0.30, 0.40), (0.10, 0.20, 0.30)))
RATE = Policy(rate=1e-2)


def one_hot(i: int) -> np.ndarray:
    vector = np.zeros(8, np.float32)
    vector[i] = 1.0
    return vector


def nobody(template: np.ndarray) -> tuple[Sequence[Candidate], int]:
    return [], 1


@settings(max_examples=200, deadline=None)
# No subnormals: a model runtime loaded in the same process may set flush-to-zero.
@given(st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=1, max_size=40), st.integers(1, 6))
def test_the_rates_of_all_of_a_tracks_decisions_sum_to_at_most_the_policys(qualities: list[float],
                                                                           capacity: int) -> None:
    assert RATE.rate is not None
    evidence = TrackEvidence(capacity)
    spent: list[float] = []
    for i, quality in enumerate(qualities):
        evidence.add(quality, one_hot(i % 8))
        verdict = evidence.decide(nobody, RATE, CAL)
        if verdict is not None:
            assert verdict.rate is not None
            # Only the first decision may spend less than a tenth (one poor shot must still be decided on).
            assert not spent or verdict.rate >= RATE.rate * (MIN_GROWTH - 1e-9)
            spent.append(verdict.rate)
    assert spent, "the first shot is always decided on"
    assert sum(spent) <= RATE.rate * evidence.amount + 1e-12 <= RATE.rate + 1e-12


def test_the_first_shot_is_decided_on_however_little_it_shows() -> None:
    # A camera whose gate lets 0.2 through, or a track of 16 shots: one shot is far less than a tenth.
    for capacity, quality in ((3, 0.2), (16, 0.9)):
        evidence = TrackEvidence(capacity)
        evidence.add(quality, one_hot(0))
        verdict = evidence.decide(nobody, RATE, CAL)
        assert verdict is not None and verdict.rate == pytest.approx(1e-2 * quality / capacity)
        evidence.add(quality + 0.01, one_hot(1))
        assert evidence.decide(nobody, RATE, CAL) is None  # the second waits for a tenth more


def test_a_decision_is_held_to_the_rate_its_growth_earned() -> None:
    evidence = TrackEvidence(3)
    evidence.add(0.6, one_hot(0))
    first = evidence.decide(nobody, RATE, CAL)
    assert first is not None and first.rate == pytest.approx(1e-2 * 0.2)  # one shot of three, quality 0.6
    # The threshold follows from the smaller rate: stricter than one probe held to the whole rate.
    assert first.decision.threshold > RATE.threshold_for(CAL, 0.6, 1)
    evidence.add(0.3, one_hot(1))
    second = evidence.decide(nobody, RATE, CAL)
    assert second is not None and second.rate == pytest.approx(1e-2 * 0.1)


def test_a_shot_that_adds_too_little_brings_no_new_decision() -> None:
    evidence = TrackEvidence(3)
    for i, quality in enumerate((0.9, 0.9, 0.9)):
        evidence.add(quality, one_hot(i))
        assert evidence.decide(nobody, RATE, CAL) is not None
    evidence.add(0.5, one_hot(3))  # worse than every kept shot: dropped, the evidence is the same
    assert evidence.amount == pytest.approx(0.9) and not evidence.ready(RATE)
    assert evidence.decide(nobody, RATE, CAL) is None
    evidence.add(0.95, one_hot(4))  # better, by 0.05 of three shots: still too little
    assert evidence.decide(nobody, RATE, CAL) is None


def ada(template: np.ndarray) -> tuple[Sequence[Candidate], int]:
    return [Candidate("ada", 0.45)], 1


def test_a_fixed_threshold_is_the_same_for_every_decision_and_every_shot_is_decided_on() -> None:
    evidence = TrackEvidence(3)
    fixed = Policy(rate=None, threshold=0.4)
    for i, quality in enumerate((0.5, 0.51, 0.52)):
        evidence.add(quality, one_hot(i))
        verdict = evidence.decide(ada, fixed, None)
        assert verdict is not None and verdict.rate is None and verdict.decision.threshold == 0.4
        assert verdict.decision.match is not None and verdict.decision.match.key == "ada"
        assert verdict.shots == i + 1


def test_the_template_weighs_each_kept_shot_by_its_quality() -> None:
    evidence = TrackEvidence(2)
    for i, quality in enumerate((0.9, 0.3, 0.6)):  # the 0.3 shot is not kept
        evidence.add(quality, one_hot(i))
    expected = np.array([0.9, 0.0, 0.6, 0, 0, 0, 0, 0], np.float32)
    assert np.allclose(evidence.template(), expected / np.linalg.norm(expected))
    assert evidence.quality == pytest.approx(0.75)
    seen: list[np.ndarray] = []

    def recording(template: np.ndarray) -> tuple[Sequence[Candidate], int]:
        seen.append(template)
        return [], 1

    evidence.decide(recording, RATE, CAL)
    assert np.allclose(seen[0], evidence.template())  # the search is asked with the template


def test_a_search_that_fails_spends_nothing() -> None:
    def unreachable(template: np.ndarray) -> tuple[Sequence[Candidate], int]:
        raise OSError("index unavailable")

    evidence = TrackEvidence(3)
    evidence.add(0.9, one_hot(0))
    with pytest.raises(OSError):
        evidence.decide(unreachable, RATE, CAL)
    assert evidence.spent == 0.0 and evidence.decisions == 0
    verdict = evidence.decide(nobody, RATE, CAL)  # the same shot is decided on at its full share
    assert verdict is not None and verdict.rate == pytest.approx(1e-2 * 0.9 / 3)
