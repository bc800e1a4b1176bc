"""The MQTT bridge's topics and payloads (facewatch/mqtt/messages.py): no broker."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from events import CameraStatus, FaceAdded, TrackEnded
from facewatch.config import parse_config
from facewatch.mqtt import Routing, routing
from tests.event_factory import recognized, unknown

RECOGNISED = recognized("door", 3, crop="/9j/4AAQ", time=1.5)


def test_events_go_under_prefix_camera_and_type_without_the_stripped_fields() -> None:
    message = Routing.of("home/facewatch").message_for(RECOGNISED)
    assert message is not None and message.topic == "home/facewatch/door/face.recognized" and not message.retain
    body = RECOGNISED.to_json()
    assert json.loads(message.payload) == {k: v for k, v in body.items() if k not in ("crop", "embedding")}
    assert json.loads(message.payload)["subject"]["id"] == "ann"
    kept = Routing.of("fw", strip=()).message_for(RECOGNISED)
    assert kept is not None and json.loads(kept.payload)["crop"] == "/9j/4AAQ"
    face = unknown("door", 4, np.ones(8, np.float32), None)
    assert face.embedding
    message = Routing.of("fw").message_for(face)
    assert message is not None and message.topic == "fw/door/face.unknown"
    assert "embedding" not in json.loads(message.payload)


def test_camera_status_is_retained_on_the_status_topic() -> None:
    status = CameraStatus(camera="door", state="running", pid=7)
    message = Routing.of("fw").message_for(status)
    assert message is not None and message.topic == "fw/door/status" and message.retain
    assert json.loads(message.payload) == status.to_json()
    assert json.loads(message.payload)["state"] == "running"
    assert Routing.of("fw").availability_topic == "fw/available"


def test_cameras_and_event_types_filter_and_bad_names_are_not_published() -> None:
    only_door = Routing.of("fw", cameras=["door"], events=["face.recognized", "camera.status"])
    assert only_door.message_for(RECOGNISED) is not None
    assert only_door.message_for(replace(RECOGNISED, camera="yard")) is None
    ended = TrackEnded(camera="door", track=3, first_seen=1.0, last_seen=2.0, shots=1, subject=RECOGNISED.subject,
                       announced=True, unknown_sent=False, decision=RECOGNISED.decision)
    assert only_door.message_for(ended) is None
    everything = Routing.of("fw")
    assert everything.message_for(ended) is not None
    # Not a camera's event (no camera to name the topic by), or a camera id that cannot name an MQTT topic.
    not_a_camera = FaceAdded(tenant="t", gallery="staff", gallery_id="g1", face_id="f1", subject="ann",
                             subject_pk="pk-ann", model_id="m")
    assert everything.message_for(not_a_camera) is None
    for camera in ("", "a/b", "a#", "a+b", "a\x00b"):
        assert everything.message_for(replace(RECOGNISED, camera=camera)) is None, camera


def test_routing_from_the_config_section() -> None:
    cfg = parse_config({"mqtt": {"topic_prefix": "hass/fw", "cameras": ["door"], "strip": []}}, environ={})
    r = routing(cfg.mqtt)
    assert r == Routing.of("hass/fw", ["door"], [], [])
    assert not cfg.mqtt.enabled and parse_config({}, environ={}).mqtt.strip == ["crop", "embedding"]
