"""Every event facewatch publishes, as one vocabulary of frozen dataclasses.

Producers build these and publish ``event.to_json()`` (or ``encode()``: JSON or msgpack); consumers
``decode`` a message into one and match on its class, so a field renamed or an event added is a type
error, not a silent drift between packages. Each module names its topics:

    camera.py     face.recognized, face.unknown, track.ended, camera.status   /topic/watcher.<camera>
    repo.py       face.added ... gallery.removed                             /topic/repo.events
    grouping.py   group.created ... group.promoted                           /topic/grouping.events
    sightings.py  sighting.stored, subject.erased, sightings.relabelled      /topic/tenant.<id>.sightings
    jobs.py       job.progress                                               /topic/jobs.<job>

Every event has an ``id`` (deduplication of redeliveries) and a ``time``; camera events also a ``run``
and a per-run ``seq`` (events/camera.py). Boxes have one shape (``records.Box``: x_min, y_min, x_max,
y_max, in pixels of the frame whose width and height the event's ``frame`` gives).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import msgpack

from .camera import (
    ALL_CAMERAS_TOPIC, CameraEvent, CameraStatus, FaceEvent, FaceRecognized, FaceUnknown,
    TrackEnded, camera_topic,
)
from .codec import JSON, MSGPACK, Event, EventError, decode_vector, encode_vector, new_id
from .grouping import (
    GROUPING_EVENTS, GroupChanged, GroupCreated, GroupDeleted, GroupGrown, GroupIgnored, GroupingEvent, GroupMerged,
    GroupPromoted, GroupReembedded, GroupRestored, MovedFace, ReembeddedFace,
)
from .jobs import JobProgress, job_topic
from .records import Box, CandidateRef, DecisionRef, FrameRef, SubjectRef
from .repo import (
    REPO_EVENTS, FaceAdded, FaceRemoved, GalleryRemoved, GalleryRenamed, NegativeAdded, NegativeRemoved, RepoEvent,
    SubjectMerged, SubjectRemoved, SubjectUpdated,
)
from .sightings import SightingsRelabelled, SightingStored, SubjectErased

__all__ = (
    "Event", "EventError", "JSON", "MSGPACK", "EVENT_TYPES", "decode", "decode_as", "from_json", "new_id",
    "encode_vector",
    "decode_vector",
    "Box", "FrameRef", "SubjectRef", "CandidateRef", "DecisionRef",
    "CameraEvent", "FaceEvent", "FaceRecognized", "FaceUnknown", "TrackEnded", "CameraStatus", "camera_topic",
    "ALL_CAMERAS_TOPIC",
    "REPO_EVENTS", "RepoEvent", "FaceAdded", "FaceRemoved", "NegativeAdded", "NegativeRemoved", "SubjectRemoved",
    "SubjectMerged", "SubjectUpdated", "GalleryRenamed", "GalleryRemoved",
    "GROUPING_EVENTS", "GroupingEvent", "GroupCreated", "GroupGrown", "GroupMerged", "MovedFace", "GroupChanged",
    "GroupDeleted", "ReembeddedFace", "GroupReembedded", "GroupIgnored", "GroupRestored", "GroupPromoted",
    "SightingStored", "SubjectErased", "SightingsRelabelled", "JobProgress", "job_topic",
)

E = TypeVar("E", bound=Event)

# Every concrete event, by its type (tests/unit/test_events.py checks that none is missing).
EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in (
    FaceRecognized, FaceUnknown, TrackEnded, CameraStatus,
    FaceAdded, FaceRemoved, NegativeAdded, NegativeRemoved, SubjectRemoved, SubjectMerged, SubjectUpdated,
    GalleryRenamed, GalleryRemoved,
    GroupCreated, GroupGrown, GroupMerged, GroupChanged, GroupDeleted, GroupReembedded, GroupIgnored, GroupRestored,
    GroupPromoted,
    SightingStored, SubjectErased, SightingsRelabelled, JobProgress,
)}


def from_json(data: Any) -> Event:
    """The event a JSON object is, by its ``type``."""
    return _class_of(data).from_json(data)


def decode(body: bytes | str | Mapping[str, Any], content_type: str = JSON) -> Event:
    """A message body (JSON, or msgpack when ``content_type`` says so), or an already parsed object."""
    return from_json(_parsed(body, content_type))


def decode_as(body: Event | bytes | str | Mapping[str, Any], cls: type[E], content_type: str = JSON) -> E | None:
    """``body`` as an event of ``cls`` (or of a subclass); None when it is an event of another type, which
    is not validated further (cheap for a consumer that skips most of what it hears), or of a type this
    vocabulary does not know (a newer node's: not this consumer's business); EventError when it is not
    an event at all, or a malformed one of ``cls``."""
    if isinstance(body, Event):
        return body if isinstance(body, cls) else None
    data = _parsed(body, content_type)
    if isinstance(data, Mapping) and isinstance(data.get("type"), str) and data["type"] not in EVENT_TYPES:
        return None
    kind = _class_of(data)
    if not issubclass(kind, cls):
        return None
    return kind.from_json(data)


def _parsed(body: bytes | str | Mapping[str, Any], content_type: str) -> Any:
    if isinstance(body, Mapping):
        return body
    try:
        if content_type.split(";")[0].strip() == MSGPACK:
            return msgpack.unpackb(body if isinstance(body, bytes) else body.encode(), raw=False)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise EventError(f"not a {content_type} body: {exc}") from None


def _class_of(data: Any) -> type[Event]:
    if not isinstance(data, Mapping):
        raise EventError("an event is a JSON object")
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None  # a list or a map is no key to look up
    if cls is None:
        raise EventError(f"unknown event type {str(kind)[:64]!r}")
    return cls
