"""The MQTT bridge's topics and payloads (facewatch/mqtt/messages.py): no broker."""

from __future__ import annotations

import json

from facewatch.config import parse_config
from facewatch.mqtt import Routing, routing

RECOGNISED = {"type": "face.recognized", "camera": "door", "track": 3, "subject": {"id": "ann", "name": "Ann"},
              "similarity": 0.51, "crop": "/9j/4AAQ", "time": 1.5}


def test_events_go_under_prefix_camera_and_type_without_the_stripped_fields() -> None:
    message = Routing.of("home/facewatch").message_for(RECOGNISED)
    assert message is not None and message.topic == "home/facewatch/door/face.recognized" and not message.retain
    assert json.loads(message.payload) == {k: v for k, v in RECOGNISED.items() if k != "crop"}
    kept = Routing.of("fw", strip=()).message_for(RECOGNISED)
    assert kept is not None and json.loads(kept.payload)["crop"] == "/9j/4AAQ"
    unknown = Routing.of("fw").message_for({"type": "face.unknown", "camera": "door", "embedding": "AAAA"})
    assert unknown is not None and "embedding" not in json.loads(unknown.payload)


def test_camera_status_is_retained_on_the_status_topic() -> None:
    status = {"type": "camera.status", "camera": "door", "state": "running", "pid": 7}
    message = Routing.of("fw").message_for(status)
    assert message is not None and message.topic == "fw/door/status" and message.retain
    assert json.loads(message.payload) == status
    assert Routing.of("fw").availability_topic == "fw/available"


def test_cameras_and_event_types_filter_and_bad_names_are_not_published() -> None:
    only_door = Routing.of("fw", cameras=["door"], events=["face.recognized", "camera.status"])
    assert only_door.message_for(RECOGNISED) is not None
    assert only_door.message_for(RECOGNISED | {"camera": "yard"}) is None
    assert only_door.message_for(RECOGNISED | {"type": "track.ended"}) is None
    everything = Routing.of("fw")
    for bad in ({"type": "face.recognized"}, {"camera": "door"}, RECOGNISED | {"camera": "a/b"},
                RECOGNISED | {"type": "x/#"}, RECOGNISED | {"camera": 7}, RECOGNISED | {"type": ""}):
        assert everything.message_for(bad) is None, bad


def test_routing_from_the_config_section() -> None:
    cfg = parse_config({"mqtt": {"topic_prefix": "hass/fw", "cameras": ["door"], "strip": []}}, environ={})
    r = routing(cfg.mqtt)
    assert r == Routing.of("hass/fw", ["door"], [], [])
    assert not cfg.mqtt.enabled and parse_config({}, environ={}).mqtt.strip == ["crop", "embedding"]
