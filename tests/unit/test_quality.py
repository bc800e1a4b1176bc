from __future__ import annotations

import numpy as np
import pytest

from vision.geometry import ARCFACE_112
from vision.quality import QualityOptions, assess_quality, estimate_yaw_pitch


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rotated: np.ndarray = (points - points.mean(0)) @ rot.T + 100
    return rotated


def test_template_is_frontal_even_when_rolled() -> None:
    for roll in (0.0, 30.0, -45.0):
        yaw, pitch = estimate_yaw_pitch(_rotate(ARCFACE_112, roll))
        assert abs(yaw) < 2.0
        assert abs(pitch) < 5.0


def test_nose_shift_reads_as_yaw_with_sign() -> None:
    kps = ARCFACE_112.copy()
    eye_dist = kps[1, 0] - kps[0, 0]
    kps[2, 0] += 0.4 * eye_dist  # nose well towards the right eye: head turned
    yaw, _ = estimate_yaw_pitch(kps)
    assert 30 < yaw < 45
    kps[2, 0] -= 0.8 * eye_dist
    yaw_other, _ = estimate_yaw_pitch(kps)
    assert yaw_other == pytest.approx(-yaw, abs=0.5)  # the template nose is 0.1 px off centre


def test_quality_factors() -> None:
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    flat = np.full((112, 112, 3), 128, np.uint8)
    opts = QualityOptions()
    good = assess_quality(100.0, sharp, ARCFACE_112, opts)
    assert good.score == pytest.approx(1.0)
    assert assess_quality(100.0, flat, ARCFACE_112, opts).blur == 0.0
    assert assess_quality(10.0, sharp, ARCFACE_112, opts).score == 0.0
    profile = ARCFACE_112.copy()
    profile[2, 0] += 1.0 * (profile[1, 0] - profile[0, 0])
    assert assess_quality(100.0, sharp, profile, opts).frontal == 0.0
