"""What a camera is: its settings (validated), its record, and where it may read from.

Settings come from STOMP requests or ``config.yaml``; both go through
``CameraSettings`` so a bad value is the same clear error either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.errors import BadParam
from broker.core import TENANT_HEADER
from api.names import CAMERA_ID, NAME
from events import ALL_CAMERAS_TOPIC, camera_topic
from repo.events import tenant_topic
from vision.attribute_names import AttributeName

from .networks import DEFAULT_BLOCKED_NETWORKS, NETWORK_SCHEMES, IPNetwork, blocked_reason, parse_networks, url_host
from .stream import StreamOptions

PLAYLIST_SUFFIXES = (".m3u8", ".m3u", ".mpd")  # HLS and DASH

__all__ = ("CameraSettings", "Camera", "SourcePolicy", "parse_settings", "CAMERA_ID", "NODE_NAME",
           "topic_for", "msgpack_topic_for", "event_topics", "event_headers", "ALL_CAMERAS_TOPIC",
           "UNKNOWN_FACES_QUEUE", "SIGHTINGS_QUEUE")

# Lower case, no dots: the id is one word of a topic routing key.
NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")  # a watcher node (host names fit)


topic_for = camera_topic  # a camera's events (events/camera.py)
# Every face.unknown once more, as work: nodes that group faces consume it as competing consumers, so each
# unknown face is placed by exactly one node (a topic would have every node place it).
UNKNOWN_FACES_QUEUE = "/queue/facewatch.unknown-faces"
# Every face event once more, as work for the sightings writer (competing consumers, acked once stored):
# face.recognized and face.unknown become sightings; track.ended closes their time range.
SIGHTINGS_QUEUE = "/queue/facewatch.sightings"


def event_topics(camera: "Camera") -> tuple[str, str]:
    """Where a camera's JSON events go: its own topic, and the same under its tenant's prefix, so that an
    application subscribes once (``/topic/tenant.<tenant id>.watcher.*``) to all its cameras, present and
    future, and may subscribe to a camera before it is registered."""
    return topic_for(camera.id), tenant_topic(camera.tenant_id, f"watcher.{camera.id}")


def event_headers(camera: "Camera") -> dict[str, str]:
    """The headers of every event a camera publishes: its tenant's, so that the broker never hands them to
    another tenant's subscription, such as one a tenant kept on a camera id it removed and someone else
    registered since (broker.core.TENANT_HEADER)."""
    return {TENANT_HEADER: camera.tenant_id}


def msgpack_topic_for(camera_id: str) -> str:
    # Its own first word, so `/topic/watcher.*` subscribers never get binary bodies.
    return f"/topic/watcher-msgpack.{camera_id}"


class CameraSettings(BaseModel):
    """Everything an operator sets on a camera; defaults suit a door camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=200)
    url: str = Field(min_length=1, max_length=2000,
                     description="rtsp(s)://, http(s)://, file:///abs/path.mp4 (under watcher.file_roots) "
                                 "or /dev/videoN")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = Field(False, description="files: start again at the end")
    galleries: list[str] = Field(default_factory=list, max_length=32, description="galleries to match against")
    max_fps: float = Field(5.0, gt=0, le=60, description="analysed frames per second at most")
    min_face_px: float = Field(32.0, ge=0, description="smaller faces are tracked but never matched")
    min_quality: float | None = Field(None, ge=0, le=1, description="faces under this quality are not matched; "
                                                                    "default quality.min_score")
    threshold: Annotated[float, Field(ge=-1, le=1)] | Literal["strict", "medium", "low"] | None = Field(
        None, description="when a face is someone: a preset (a rate, see recognition.rates) or a fixed cosine; "
                          "default recognition.threshold")
    cooldown_s: float = Field(30.0, ge=0, description="after a recognition, the same subject is not announced again "
                                                      "on this camera for this long")
    unknown_after_frames: int = Field(5, ge=1, description="good frames without a match before face.unknown")
    attach_crop: bool = True
    attributes: list[AttributeName] = Field(default_factory=list)
    msgpack: bool = Field(False, description="also publish msgpack copies on /topic/watcher-msgpack.<id>")

    @field_validator("galleries")
    @classmethod
    def _gallery_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not NAME.match(name):
                raise ValueError(f"gallery name {name!r} is not valid")
        return value


def parse_settings(data: Any, base: CameraSettings | None = None) -> CameraSettings:
    """Validate ``data`` (over ``base`` for updates); errors are BAD_PARAM naming the field."""
    if not isinstance(data, dict):
        raise BadParam("camera settings must be a JSON object")
    merged = {**(base.model_dump() if base else {}), **data}
    try:
        return CameraSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else "camera"  # the field, not pydantic's union branch
        reason = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        if param == "threshold":
            reason = "must be a number between -1 and 1 or one of strict, medium, low"
        raise BadParam(f"{param}: {reason}", param) from None


@dataclass(slots=True, frozen=True)
class Camera:
    id: str
    tenant_id: str
    settings: CameraSettings
    enabled: bool  # should it be running
    created_at: float
    updated_at: float
    node: str | None = None  # the watcher node that runs it

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.settings.model_dump(), "enabled": self.enabled, "node": self.node,
                "created_at": self.created_at, "updated_at": self.updated_at, "topic": topic_for(self.id),
                "tenant_topic": event_topics(self)[1]}


@dataclass(slots=True, frozen=True)
class SourcePolicy:
    """Which sources a camera may read. Local files and devices are opt-in:
    otherwise any tenant could make the server read its own disk."""

    file_roots: tuple[str, ...] = ()
    allow_devices: bool = False
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    max_attempts: int = 5
    # Networks rtsp/http cameras may not reach (watcher/networks.py): this host and link-local by default.
    blocked_networks: tuple[IPNetwork, ...] = parse_networks(DEFAULT_BLOCKED_NETWORKS)
    allow_playlists: bool = False  # HLS/DASH: their segments' URLs are opened by FFmpeg, unchecked

    def check(self, url: str, resolve: bool = True) -> None:
        """BAD_PARAM when a camera may not read ``url``. ``resolve``: a network camera's host name is checked
        by the addresses it resolves to (blocking)."""
        self.stream_options(CameraSettings(url=url), resolve)

    def stream_options(self, settings: CameraSettings, resolve: bool = False) -> StreamOptions:
        """The reader options for ``settings``; BAD_PARAM when the source is not allowed (``resolve``: by
        the addresses its host name has now, too; the reader checks them again at each open)."""
        source, input_format = self._source(settings.url, resolve)
        return StreamOptions(source, rtsp_transport=settings.rtsp_transport, open_timeout_s=self.open_timeout_s,
                             read_timeout_s=self.read_timeout_s, loop=settings.loop, max_fps=settings.max_fps,
                             max_attempts=self.max_attempts, input_format=input_format,
                             blocked_networks=self.blocked_networks, allow_playlists=self.allow_playlists)

    def _source(self, url: str, resolve: bool) -> tuple[str, str | None]:
        if not url.isprintable():
            # FFmpeg takes C strings: a NUL would end the URL early; other control characters mean nothing.
            raise BadParam("url may not contain control characters", "url")
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port  # port: ValueError if bad
        except ValueError as exc:  # "http://[::1", "http://h:99999/"
            raise BadParam(f"url is not a valid URL: {exc}", "url") from None
        if scheme in NETWORK_SCHEMES:
            if not host:
                raise BadParam("url has no host", "url")
            try:
                host, port = url_host(url)  # as FFmpeg will read them, or refused
            except ValueError as exc:
                raise BadParam(f"url: {exc}", "url") from None
            reason = blocked_reason(host, port, self.blocked_networks, resolve=resolve)
            if reason is not None:
                raise BadParam(f"url: {reason}", "url")
            if not self.allow_playlists and parts.path.lower().endswith(PLAYLIST_SUFFIXES):
                raise BadParam("url: HLS and DASH playlists are not read by default (they name segment URLs that "
                               "would be opened unchecked); an operator who trusts the tenants sets "
                               "watcher.allow_playlists (FACEWATCH_WATCHER__ALLOW_PLAYLISTS=true) and restarts "
                               "facewatch; or use the camera's RTSP stream", "url")
            return url, None
        if url.startswith("/dev/video") or scheme == "v4l2":
            if not self.allow_devices:
                raise BadParam("video devices are disabled; set watcher.allow_devices", "url")
            return (parts.path if scheme == "v4l2" else url), "v4l2"
        if scheme in ("file", ""):
            path = Path(parts.path if scheme == "file" else url)
            if not path.is_absolute():
                raise BadParam("file paths must be absolute (file:///path/to/video.mp4)", "url")
            resolved = path.resolve()
            if not any(resolved.is_relative_to(Path(root).resolve()) for root in self.file_roots):
                now = "it is empty, so no file may be read" if not self.file_roots else "this file is outside it"
                raise BadParam(f"file cameras may read only under the folders of the server's watcher.file_roots "
                               f"({now}): the operator adds the video's folder to watcher.file_roots in the config "
                               "file (or FACEWATCH_WATCHER__FILE_ROOTS='[\"/folder\"]') and restarts facewatch",
                               "url")
            return str(resolved), None
        raise BadParam(f"unsupported source {scheme!r}: use rtsp, rtsps, http, https, file or /dev/videoN", "url")
