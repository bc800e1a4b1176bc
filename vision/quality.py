"""A quality score that lets callers refuse tiny, blurred or profile faces.

Cheap on purpose: size from the box, sharpness from the face at its native
resolution, yaw and pitch from the pose model (or the five points).

Sharpness is measured on the face as the camera delivered it, not on the
112 px crop the embedder sees: a sharp 40 px face upscaled into that crop
looks blurred to any edge measure, and a gate on it discards every face of SD
video. It is also divided by the crop's contrast, so a dim sharp face is not
taken for a blurred one. Size and sharpness combine as a geometric mean (one
weak factor halves the score instead of zeroing it); yaw multiplies, as a
profile is no use however sharp. What the embedding model itself makes of the
face (its raw embedding norm, ``Face.embedding_norm``) is the last word, after
embedding: see repo/decision.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .geometry import ARCFACE_112
from .records import Quality

__all__ = ("QualityOptions", "assess_quality", "estimate_yaw_pitch", "sharpness", "masked_views", "with_embedding")

# Depth of the nose tip in front of the eye line, as a fraction of the eye
# distance (anthropometric average); turns the nose's sideways shift into an angle.
_NOSE_DEPTH = 0.55
# On a frontal face the nose tip sits this far from the eye line towards the
# mouth line (measured on the ArcFace template).
_NOSE_DROP_FRONTAL = (71.7366 - 51.6) / (92.28 - 51.6)


@dataclass(slots=True, frozen=True)
class QualityOptions:
    min_size_px: float = 20.0  # size factor 0 at or below this
    good_size_px: float = 48.0  # size factor 1 at or above this
    blur_sharpness: float = 0.01  # native-resolution sharpness (see sharpness()) at or below: factor 0
    sharp_sharpness: float = 0.05  # ... at or above: factor 1
    frontal_yaw_deg: float = 25.0  # frontal factor 1 up to here
    profile_yaw_deg: float = 50.0  # frontal factor 0 from here on
    # Where yaw comes from: "pose_model" (about 9 ms a face on one CPU core,
    # reliable) or "landmarks" (free, but the 68-point model draws a frontal
    # shape on true profiles, which then pass: frame 20 of the shared clip,
    # a 76 degree profile, reads as 5 degrees).
    yaw_source: str = "pose_model"
    # The embedding model's raw output norm on good faces (the median over LFW
    # View 1 for the default pack; bench/calibrate.py prints it for any model).
    # Faces whose norm is under low_norm_ratio of it are unrecognisable to the
    # model (factor 0: hands over the face, heavy blur), over high_norm_ratio fine.
    reference_norm: float = 3.57
    low_norm_ratio: float = 0.55
    high_norm_ratio: float = 0.8
    # Covered faces (a hand over the mouth, dark glasses): the embedding of the face with its lower
    # (or upper) part masked is compared with the whole face's. A visible face loses identity with
    # either half (LFW View 1: similarity 0.60 median, 0.72 at the 95th percentile); a covered half
    # carried none, so masking it changes little (0.91 median with a hand-like patch over nose and
    # mouth, 0.81 with dark glasses). Factor 1 up to visible_consistency, 0 from covered_consistency.
    occlusion_check: bool = True  # two more embeddings per face, in the same batch
    visible_consistency: float = 0.72
    covered_consistency: float = 0.82


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


# Eye distance of the ArcFace template at 112 px: the crop's scale against the source.
_TEMPLATE_EYE_DISTANCE = float(np.hypot(*(ARCFACE_112[1] - ARCFACE_112[0])))


def sharpness(aligned: np.ndarray, kps: np.ndarray) -> float:
    """Edge energy over contrast of the face at its native resolution.

    The aligned crop is brought back to the face's size in the source image
    (never up), so upscaling adds no blur; the Laplacian's variance is divided
    by the intensity variance, so a low-contrast face is not called blurred.
    """
    eye_distance = float(np.hypot(*(np.asarray(kps[1], np.float64) - np.asarray(kps[0], np.float64))))
    size = aligned.shape[0]
    scale = min(1.0, eye_distance / (_TEMPLATE_EYE_DISTANCE * size / 112.0))
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    if scale < 1.0:
        side = max(8, int(round(size * scale)))
        grey = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
    # The central part only: borders of the warp are black and would add edges.
    n = grey.shape[0]
    centre = grey[n // 7 : n - n // 7, n // 7 : n - n // 7].astype(np.float32)
    contrast = float(centre.var())
    return float(cv2.Laplacian(centre, cv2.CV_32F).var()) / (contrast + 25.0)


def assess_quality(
    size_px: float, aligned: np.ndarray, kps: np.ndarray, options: QualityOptions,
    yaw_pitch: tuple[float, float] | None = None,
) -> Quality:
    """``yaw_pitch`` from a pose model when the caller has one, else from ``kps``."""
    sharp = sharpness(aligned, kps)
    yaw, pitch = yaw_pitch if yaw_pitch is not None else estimate_yaw_pitch(kps)
    size = _ramp(size_px, options.min_size_px, options.good_size_px)
    blur = _ramp(sharp, options.blur_sharpness, options.sharp_sharpness)
    frontal = 1.0 - _ramp(abs(yaw), options.frontal_yaw_deg, options.profile_yaw_deg)
    return Quality(
        score=math.sqrt(size * blur) * frontal,  # times ``recognisable`` once embedded
        size_px=size_px,
        size=size,
        sharpness=sharp,
        blur=blur,
        yaw_deg=yaw,
        pitch_deg=pitch,
        frontal=frontal,
    )


def masked_views(aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop with everything below the nose, and everything above the eyes' line, set to grey."""
    size = aligned.shape[0]
    lower, upper = aligned.copy(), aligned.copy()
    lower[int(size * 68 / 112):] = 128  # the template's nose tip is at 71.7 of 112
    upper[: int(size * 60 / 112)] = 128  # its eyes at 51.7
    return lower, upper


def with_embedding(quality: Quality, norm: float, consistency: float | None, options: QualityOptions) -> Quality:
    """The quality once the face is embedded: times how recognisable the model found it (its
    raw embedding norm) and how uncovered the face is (``consistency``: the higher of the whole
    face's similarity to its two masked views; None when not measured)."""
    ratio = norm / options.reference_norm if options.reference_norm > 0 else 1.0
    recognisable = _ramp(ratio, options.low_norm_ratio, options.high_norm_ratio)
    visible = 1.0 if consistency is None else \
        1.0 - _ramp(consistency, options.visible_consistency, options.covered_consistency)
    return replace(quality, score=quality.score * recognisable * visible, recognisable=recognisable,
                   norm_ratio=ratio, visible=visible, consistency=consistency if consistency is not None else 0.0)
