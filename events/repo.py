"""The face repository's changes, on ``/topic/repo.events`` (every tenant's, embeddings included: the
server's own topic, which every node's indexes and cameras follow) and, without embeddings, on the
tenant's ``/topic/tenant.<id>.repo``.

``version`` is the gallery's version after the change: a follower applies each gallery's changes in
order and reloads the gallery from the database when one is missing (repo/sync.py). ``None``: a change
no index follows (``subject.updated``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Self

from .codec import Event

__all__ = ("REPO_EVENTS", "RepoEvent", "FaceAdded", "FaceRemoved", "NegativeAdded", "NegativeRemoved",
           "SubjectRemoved", "SubjectMerged", "SubjectUpdated", "GalleryRenamed", "GalleryRemoved")

REPO_EVENTS = "/topic/repo.events"


@dataclass(frozen=True, slots=True, kw_only=True)
class RepoEvent(Event):
    tenant: str
    gallery: str  # its name (after a rename: the new one)
    gallery_id: str
    version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceAdded(RepoEvent):
    """A face enrolled, or re-embedded by the current model."""

    TYPE = "face.added"

    face_id: str
    subject: str | None  # its id; None when the subject was removed since (a re-embedding)
    subject_pk: str
    model_id: str
    embedding: str | None = None  # float32, base64; left out of tenant copies

    def for_tenant(self) -> Self:
        return replace(self, embedding=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceRemoved(RepoEvent):
    TYPE = "face.removed"

    face_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NegativeAdded(RepoEvent):
    """"This face is not ``subject``" (feedback)."""

    TYPE = "negative.added"

    negative_id: str
    subject: str
    subject_pk: str
    model_id: str
    embedding: str | None = None

    def for_tenant(self) -> Self:
        return replace(self, embedding=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class NegativeRemoved(RepoEvent):
    TYPE = "negative.removed"

    negative_id: str
    subject_pk: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectRemoved(RepoEvent):
    TYPE = "subject.removed"

    subject: str
    subject_pk: str
    face_ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectMerged(RepoEvent):
    """``merged`` renamed into the existing ``subject``: its faces (``face_ids``) and negatives moved."""

    TYPE = "subject.merged"

    subject: str
    subject_pk: str
    merged: str
    merged_pk: str
    face_ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectUpdated(RepoEvent):
    """Its name or metadata changed: nothing an index follows."""

    TYPE = "subject.updated"

    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryRenamed(RepoEvent):
    TYPE = "gallery.renamed"

    old_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryRemoved(RepoEvent):
    TYPE = "gallery.removed"
