"""The decision rule: thresholds from a rate, the gallery's size and the probe's quality; margin; negatives."""

from __future__ import annotations

import numpy as np
import pytest

from repo.calibration import Calibration, fit_calibration
from repo.decision import Candidate, Policy, decide, per_comparison_far

# Two bands: faces under quality 0.5 draw impostors closer than better faces.
CAL = Calibration("m", (0.0, 0.5, 1.0001), (-1.0, -2.0, -3.0),
                  ((0.20, 0.30, 0.40), (0.10, 0.20, 0.30)))


def test_per_comparison_far_keeps_the_fpir_over_n_comparisons() -> None:
    for fpir, n in ((1e-3, 1), (1e-2, 1000), (0.1, 7)):
        far = per_comparison_far(fpir, n)
        assert 1 - (1 - far) ** n == pytest.approx(fpir, rel=1e-9)


def test_the_threshold_rises_with_the_gallery_and_falls_with_quality() -> None:
    rate = Policy(rate=1e-1)
    one, hundred = rate.threshold_for(CAL, 0.9, 1), rate.threshold_for(CAL, 0.9, 100)
    assert one == pytest.approx(0.10) and hundred == pytest.approx(0.30, abs=0.01)
    assert rate.threshold_for(CAL, 0.2, 1) == pytest.approx(0.20)  # the lower band: stricter
    # Past the deepest measured FAR (1e-3) the last segment is extended: 1e-4 -> 0.40 in the top band.
    assert Policy(rate=1e-4).threshold_for(CAL, 0.9, 1) == pytest.approx(0.40)
    assert Policy(rate=None, threshold=0.33).threshold_for(None, 0.0, 10**6) == 0.33  # fixed: no adjustment
    with pytest.raises(ValueError):
        Policy(rate=1e-3).threshold_for(None, 1.0, 1)


def test_margin_and_negatives_decide_who_is_named() -> None:
    fixed = Policy(rate=None, threshold=0.3, margin=0.05)
    ada, bob = Candidate("ada", 0.50), Candidate("bob", 0.47)
    assert decide([bob, ada], fixed, None, quality=1, comparisons=2).reason == "ambiguous"
    clear = decide([Candidate("ada", 0.60), bob], fixed, None, quality=1, comparisons=2)
    assert clear.match is not None and clear.match.key == "ada" and clear.runner_up == bob
    assert clear.margin == pytest.approx(0.13)
    # Ada was corrected ("not Ada") with a face closer to this probe than her own faces: Bob is left,
    # and he leads nobody by the margin but passes on his own.
    refuted = decide([Candidate("ada", 0.60, negative_similarity=0.8), bob], fixed, None, quality=1, comparisons=2)
    assert refuted.match is not None and refuted.match.key == "bob" and refuted.refuted[0].key == "ada"
    below = decide([Candidate("ada", 0.2)], fixed, None, quality=1, comparisons=1)
    assert below.match is None and below.reason == "below_threshold" and below.best is not None
    assert decide([], fixed, None, quality=1, comparisons=0).reason == "no_candidates"
    gated = Policy(rate=None, threshold=0.3, min_quality=0.3)
    poor = decide([Candidate("ada", 0.9)], gated, None, quality=0.2, comparisons=1)
    assert poor.match is None and poor.reason == "low_quality" and poor.best is not None  # still shown


def test_fit_measures_quantiles_extrapolates_and_never_trusts_a_worse_band_more() -> None:
    rng = np.random.default_rng(3)
    good, poor = rng.normal(0.0, 0.1, 200_000), rng.normal(-0.05, 0.08, 200_000)  # the poor band scores LOWER
    cal = fit_calibration("m", [poor, good], (0.0, 0.5, 1.0001), (-1.0, -2.0, -3.0, -4.0, -5.0), "test")
    top = cal.thresholds[1]
    assert top[0] == pytest.approx(np.quantile(good, 0.9), abs=2e-3)
    assert top[2] == pytest.approx(np.quantile(good, 0.999), abs=1e-2)
    assert top[4] >= top[3] >= top[2]  # 1e-5 (extrapolated: 2 pairs in 200,000 are too few) keeps rising
    assert all(p >= g for p, g in zip(cal.thresholds[0], top))  # the poor band inherits the stricter values
    assert Calibration.from_json(cal.as_json()) == cal
