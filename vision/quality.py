"""A quality score that lets callers refuse tiny, blurred or profile faces.

Cheap on purpose (no extra model): size from the box, sharpness from the
aligned crop, yaw and pitch from the five points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .records import Quality

__all__ = ("QualityOptions", "assess_quality", "estimate_yaw_pitch")

# Depth of the nose tip in front of the eye line, as a fraction of the eye
# distance (anthropometric average); turns the nose's sideways shift into an angle.
_NOSE_DEPTH = 0.55
# On a frontal face the nose tip sits this far from the eye line towards the
# mouth line (measured on the ArcFace template).
_NOSE_DROP_FRONTAL = (71.7366 - 51.6) / (92.28 - 51.6)


@dataclass(slots=True, frozen=True)
class QualityOptions:
    min_size_px: float = 24.0  # size factor 0 at or below this
    good_size_px: float = 80.0  # size factor 1 at or above this
    blur_sharpness: float = 20.0  # Laplacian variance below which a crop is blurred (factor 0)
    sharp_sharpness: float = 150.0  # ... and above which it is sharp (factor 1)
    frontal_yaw_deg: float = 25.0  # frontal factor 1 up to here
    profile_yaw_deg: float = 50.0  # frontal factor 0 from here on
    # Where yaw comes from: "pose_model" (about 9 ms a face on one CPU core,
    # reliable) or "landmarks" (free, but the 68-point model draws a frontal
    # shape on true profiles, which then pass: frame 20 of the shared clip,
    # a 76 degree profile, reads as 5 degrees).
    yaw_source: str = "pose_model"


def _ramp(value: float, low: float, high: float) -> float:
    if high <= low:
        return 1.0 if value >= high else 0.0
    return float(min(max((value - low) / (high - low), 0.0), 1.0))


def estimate_yaw_pitch(kps: np.ndarray) -> tuple[float, float]:
    """Rough head yaw and pitch in degrees from eyes, nose and mouth corners."""
    left_eye, right_eye, nose, mouth_l, mouth_r = (np.asarray(p, np.float64) for p in kps)
    eye_mid = (left_eye + right_eye) / 2
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 90.0, 0.0
    # Work in the frame of the eye line so that roll does not read as yaw.
    axis_x = eye_vec / eye_dist
    axis_y = np.array([-axis_x[1], axis_x[0]])
    offset = nose - eye_mid
    shift = float(offset @ axis_x) / eye_dist
    yaw = math.degrees(math.atan2(shift, _NOSE_DEPTH))
    mouth_mid = (mouth_l + mouth_r) / 2
    face_height = float((mouth_mid - eye_mid) @ axis_y)
    if abs(face_height) < 1e-6:
        return yaw, 0.0
    drop = float(offset @ axis_y) / face_height
    pitch = (drop - _NOSE_DROP_FRONTAL) * 90.0
    return yaw, pitch


def assess_quality(
    size_px: float, aligned: np.ndarray, kps: np.ndarray, options: QualityOptions,
    yaw_pitch: tuple[float, float] | None = None,
) -> Quality:
    """``yaw_pitch`` from a pose model when the caller has one, else from ``kps``."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    # The central part only: borders of the warp are black and would add edges.
    sharpness = float(cv2.Laplacian(grey[16:96, 16:96], cv2.CV_64F).var())
    yaw, pitch = yaw_pitch if yaw_pitch is not None else estimate_yaw_pitch(kps)
    size = _ramp(size_px, options.min_size_px, options.good_size_px)
    blur = _ramp(sharpness, options.blur_sharpness, options.sharp_sharpness)
    frontal = 1.0 - _ramp(abs(yaw), options.frontal_yaw_deg, options.profile_yaw_deg)
    return Quality(
        score=size * blur * frontal,
        size_px=size_px,
        size=size,
        sharpness=sharpness,
        blur=blur,
        yaw_deg=yaw,
        pitch_deg=pitch,
        frontal=frontal,
    )
