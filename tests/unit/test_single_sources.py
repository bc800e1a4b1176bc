"""Names written once: the lists and patterns several packages check against agree."""

from __future__ import annotations

from dataclasses import fields
from typing import get_args

import vision.attributes
from api.names import NAME
from broker.destinations import parse_destination, topic_matches
from facewatch.analyzer_setup import _ATTRIBUTE_CLASSES
from facewatch.config import FacewatchConfig
from repo.decision import Policy
from vision.attribute_names import ATTRIBUTE_NAMES
from watcher.camera_options import pipeline_options
from watcher.cameras import ALL_CAMERAS_TOPIC, CameraSettings, topic_for
from watcher.pipeline import PipelineOptions


def test_every_attribute_name_has_one_model_and_a_default_file() -> None:
    names = (getattr(cls, "name", None) for cls in vars(vision.attributes).values() if isinstance(cls, type))
    models = {name for name in names if isinstance(name, str)}
    assert models == set(ATTRIBUTE_NAMES)
    assert set(_ATTRIBUTE_CLASSES) == set(ATTRIBUTE_NAMES)
    assert set(FacewatchConfig().models.attributes) == set(ATTRIBUTE_NAMES)
    (camera_attribute,) = get_args(CameraSettings.model_fields["attributes"].annotation)
    assert get_args(camera_attribute) == ATTRIBUTE_NAMES


def test_all_cameras_topic_matches_each_camera_topic() -> None:
    pattern = parse_destination(ALL_CAMERAS_TOPIC, pattern_allowed=True)
    assert pattern.kind == "topic"
    assert topic_matches(pattern.name, parse_destination(topic_for("door-1")).name)
    assert not topic_matches(pattern.name, parse_destination("/topic/watcher-msgpack.door-1").name)


def test_gallery_names_follow_the_api_name_rule() -> None:
    assert NAME.match("Staff 2.0_a-b") and not NAME.match("a/b") and not NAME.match("x" * 201)
    CameraSettings(url="rtsp://cam/1", galleries=["Staff 2.0_a-b"])


def test_every_camera_setting_the_pipeline_has_is_carried_over() -> None:
    shared = {f.name for f in fields(PipelineOptions)} & set(CameraSettings.model_fields)
    assert {"min_face_px", "min_quality", "cooldown_s", "unknown_after_frames", "attach_crop", "attributes"} <= shared
    settings = CameraSettings(url="rtsp://cam/1", min_face_px=41.0, min_quality=0.55, cooldown_s=7.0,
                              unknown_after_frames=9, attach_crop=False, attributes=["eyes", "age"])
    for name in shared:
        assert getattr(settings, name) != CameraSettings.model_fields[name].default, f"set {name} above"
    options = pipeline_options("cam", settings, Policy(rate=None, threshold=0.4), default_min_quality=0.2)
    for name in shared:
        value = getattr(settings, name)
        assert getattr(options, name) == (tuple(value) if isinstance(value, list) else value), name
    unset = pipeline_options("cam", CameraSettings(url="rtsp://cam/1"), Policy(rate=None, threshold=0.4),
                             default_min_quality=0.2)
    assert unset.min_quality == 0.2 and unset.attributes == ()
