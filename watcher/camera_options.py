"""From a camera's settings to its pipeline's options: the one place they are mapped.

``CameraSettings`` holds the defaults of everything an operator sets per camera;
``PipelineOptions`` repeats none of them. What is set for the whole node
(``watcher.*`` in the config) comes in as ``NodeOptions``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict, Unpack

from repo.calibration import Calibration
from repo.decision import Policy

from .cameras import CameraSettings
from .pipeline import PipelineOptions

__all__ = ("NodeOptions", "pipeline_options")


class NodeOptions(TypedDict, total=False):
    """Pipeline options of the whole node, not of one camera; left out, PipelineOptions' defaults."""

    calibration: Calibration | None
    rematch_interval_s: float
    tiles_per_frame: int
    track_shots: int
    crop_max_px: int


def pipeline_options(camera_id: str, settings: CameraSettings, policy: Policy, *, default_min_quality: float,
                     **node: Unpack[NodeOptions]) -> PipelineOptions:
    """``policy`` is what ``settings.threshold`` means (the repo decides); ``default_min_quality``
    applies when the camera sets no ``min_quality`` (config ``quality.min_score``)."""
    min_quality = settings.min_quality if settings.min_quality is not None else default_min_quality
    return PipelineOptions(
        camera_id=camera_id, policy=replace(policy, min_quality=min_quality), min_face_px=settings.min_face_px,
        min_quality=min_quality,
        cooldown_s=settings.cooldown_s, unknown_after_frames=settings.unknown_after_frames,
        attach_crop=settings.attach_crop, attributes=tuple(settings.attributes), **node,
    )
