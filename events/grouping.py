"""Grouping's changes, on ``/topic/grouping.events`` (every tenant's, embeddings included: the server's
own) and, without embeddings, on the tenant's ``/topic/tenant.<id>.grouping``.

``version`` is the tenant's grouping version after the change, followed in order by every node's group
index (grouping/mirror.py); ``None`` for what no index follows (a status, a promotion).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Self

from .codec import Event

__all__ = ("GROUPING_EVENTS", "GroupingEvent", "GroupCreated", "GroupGrown", "GroupMerged", "MovedFace",
           "GroupChanged", "GroupDeleted", "ReembeddedFace", "GroupReembedded", "GroupIgnored", "GroupRestored",
           "GroupPromoted")

GROUPING_EVENTS = "/topic/grouping.events"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupingEvent(Event):
    tenant: str
    version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCreated(GroupingEvent):
    """An unknown face placed in a new group. ``event`` is the face.unknown's id (``camera``, ``track``:
    where it was seen; None for an uploaded face): it links the camera's event to its group."""

    TYPE = "group.created"

    group: str
    face: str
    camera: str | None
    track: int | None
    event: str | None
    similarity: float
    model_id: str
    embedding: str | None = None

    def for_tenant(self) -> Self:
        return replace(self, embedding=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupGrown(GroupCreated):
    """An unknown face placed in an existing group. The same fields as ``GroupCreated``, as its subclass:
    ``case GroupCreated()`` matches both (what the index mirrors want); match ``GroupGrown`` first to
    tell them apart."""

    TYPE = "group.grown"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMerged(GroupingEvent):
    TYPE = "group.merged"

    group: str
    merged: list[str]
    similarity: float | None = None  # an automatic merge: how alike the groups were


@dataclass(frozen=True, slots=True)
class MovedFace:
    """A face moved or removed: the index takes its vector out of the group it was in."""

    id: str
    from_group: str
    model_id: str
    embedding: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged(GroupingEvent):
    """Faces moved into ``group`` (``moved``) or taken out of it (``removed``)."""

    TYPE = "group.changed"

    group: str
    moved: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    faces: list[MovedFace] = field(default_factory=list)

    def for_tenant(self) -> Self:
        return replace(self, faces=[replace(face, embedding=None) for face in self.faces])


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDeleted(GroupingEvent):
    TYPE = "group.deleted"

    group: str


@dataclass(frozen=True, slots=True)
class ReembeddedFace:
    id: str
    group: str
    embedding: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupReembedded(GroupingEvent):
    """Faces re-embedded by the current model: counted in their groups' index entries."""

    TYPE = "group.reembedded"

    faces: list[ReembeddedFace]

    def for_tenant(self) -> Self:
        return replace(self, faces=[replace(face, embedding=None) for face in self.faces])


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupIgnored(GroupingEvent):
    TYPE = "group.ignored"

    group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRestored(GroupingEvent):
    """An ignored group active again."""

    TYPE = "group.restored"

    group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPromoted(GroupingEvent):
    TYPE = "group.promoted"

    group: str
    gallery: str
    subject: str
