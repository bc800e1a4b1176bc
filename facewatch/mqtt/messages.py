"""What the MQTT bridge publishes for a camera event: topic, payload, retain. Pure: no I/O.

Topics, as Home Assistant and Frigate users expect them:

    <prefix>/available                 online | offline (retained; offline is also the will)
    <prefix>/<camera>/status           the camera's last camera.status event (retained)
    <prefix>/<camera>/<event type>     face.recognized, face.unknown, track.ended (not retained)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from events import CameraEvent, Event

__all__ = ("MqttMessage", "Routing", "ONLINE", "OFFLINE", "STATUS_EVENT")

ONLINE = b"online"
OFFLINE = b"offline"
STATUS_EVENT = "camera.status"


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Routing:
    """Which events go out and under which topic. Empty ``cameras`` or ``events``: all of them."""

    prefix: str
    cameras: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    strip: frozenset[str] = frozenset({"crop", "embedding"})

    @classmethod
    def of(cls, prefix: str, cameras: Iterable[str] = (), events: Iterable[str] = (),
           strip: Iterable[str] = ("crop", "embedding")) -> "Routing":
        return cls(prefix, frozenset(cameras), frozenset(events), frozenset(strip))

    @property
    def availability_topic(self) -> str:
        return f"{self.prefix}/available"

    def status_topic(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def message_for(self, event: Event) -> MqttMessage | None:
        """The message for a camera event, or None when it is not to be published: another camera, another
        type, not a camera's event, or a camera id that cannot name an MQTT topic."""
        if not isinstance(event, CameraEvent):
            return None
        camera, kind = event.camera, event.TYPE
        if not camera or any(c in camera for c in "/#+\x00"):
            return None
        if (self.cameras and camera not in self.cameras) or (self.events and kind not in self.events):
            return None
        body = event.to_json()
        payload = json.dumps({k: v for k, v in body.items() if k not in self.strip}, separators=(",", ":")).encode()
        if kind == STATUS_EVENT:
            return MqttMessage(self.status_topic(camera), payload, retain=True)
        return MqttMessage(f"{self.prefix}/{camera}/{kind}", payload)
