"""The galleries one camera matches against, kept current from /topic/repo.events.

Built from the database at start and then changed by events, so an enrolment
made while a camera runs is recognised within one event's delivery. Events
that arrive while the database is being read are held and applied after it:
adds and removes are idempotent, so none is lost and none counts twice.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import NotFound
from repo.index import GalleryIndex, NegativeIndex, SearchOptions
from repo.store import RepoStore, Subject

__all__ = ("GalleryCandidate", "GalleryFollower")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class GalleryCandidate:
    """A subject's best face for one probe."""

    subject_pk: str
    face_id: str
    similarity: float
    gallery: str  # the gallery's name
    negative_similarity: float | None = None  # to the subject's nearest negative ("not this subject"), if any


def _vector(event: dict[str, Any]) -> np.ndarray:
    """The float32 embedding a face.added or negative.added event carries (base64)."""
    return np.frombuffer(base64.b64decode(event["embedding"]), np.float32)


class GalleryFollower:
    def __init__(self, store: RepoStore, tenant_id: str, gallery_names: Sequence[str], dim: int, model_id: str,
                 search: SearchOptions = SearchOptions()) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.names = set(gallery_names)
        self.dim = dim
        self.model_id = model_id
        self.search = search
        self._indexes: dict[str, GalleryIndex] = {}  # by gallery id
        self._negatives: dict[str, NegativeIndex] = {}  # by gallery id: corrections ("not this subject")
        self._gallery_names: dict[str, str] = {}  # gallery id -> name
        self._held: list[dict[str, Any]] | None = []  # events seen before load() finished
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return sum(len(i) for i in self._indexes.values())

    def load(self) -> int:
        """Read every followed gallery from the database, then apply held events."""
        for name in sorted(self.names):
            try:
                gallery = self.store.gallery(self.tenant_id, name)
            except NotFound:
                log.info("gallery %r does not exist yet; followed from its first enrolment", name)
                continue
            self._reload(gallery.id, name)
        with self._lock:  # replayed under the lock: an event arriving meanwhile waits, so order holds
            held, self._held = self._held or [], None
            for event in held:
                self._apply(event)
        return len(self)

    def _reload(self, gallery_id: str, name: str) -> None:
        index = GalleryIndex(self.dim, options=self.search)
        for face_ids, subject_pks, vectors in self.store.iter_gallery_embeddings(gallery_id, self.model_id):
            index.add(face_ids, subject_pks, vectors)
        negatives = NegativeIndex()
        for negative in self.store.gallery_negatives(gallery_id, self.model_id):
            negatives.add(negative.id, negative.subject_pk, negative.embedding)
        self._indexes[gallery_id] = index
        self._negatives[gallery_id] = negatives
        self._gallery_names[gallery_id] = name

    def apply(self, event: dict[str, Any]) -> None:
        """One /topic/repo.events message (any tenant's; others are ignored)."""
        if event.get("tenant") != self.tenant_id or event.get("gallery") not in self.names:
            return
        with self._lock:  # one change at a time: an add and a remove of the same face cannot swap
            if self._held is not None:
                self._held.append(event)
                return
            self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        gallery_id, kind = str(event.get("gallery_id")), event.get("type")
        if kind == "face.added":
            if event.get("model_id") != self.model_id:
                return  # another embedding model's vector cannot be compared with ours
            index = self._indexes.get(gallery_id)
            if index is None:
                index = self._indexes[gallery_id] = GalleryIndex(self.dim, options=self.search)
                self._gallery_names[gallery_id] = str(event["gallery"])
            if not index.contains(event["face_id"]):
                index.add([event["face_id"]], [event["subject_pk"]], _vector(event)[None, :])
        elif kind == "face.removed" and gallery_id in self._indexes:
            self._indexes[gallery_id].remove([event["face_id"]])
        elif kind == "subject.removed" and gallery_id in self._indexes:
            self._indexes[gallery_id].remove(list(event.get("face_ids", [])))
            self._negatives.setdefault(gallery_id, NegativeIndex()).remove_subject(str(event.get("subject_pk")))
        elif kind == "negative.added":
            if event.get("model_id") == self.model_id:
                self._negatives.setdefault(gallery_id, NegativeIndex()).add(event["negative_id"],
                                                                              event["subject_pk"], _vector(event))
        elif kind == "negative.removed" and gallery_id in self._negatives:
            self._negatives[gallery_id].remove([event["negative_id"]])
        elif kind == "subject.merged":
            self._reload(gallery_id, str(event["gallery"]))  # faces moved to another subject
        elif kind == "gallery.removed":
            self._indexes.pop(gallery_id, None)
            self._negatives.pop(gallery_id, None)
            self._gallery_names.pop(gallery_id, None)

    def candidates(self, embedding: np.ndarray, k: int = 2) -> tuple[list[GalleryCandidate], int]:
        """The ``k`` closest subjects over every followed gallery, best first, and how many faces were compared."""
        found: list[GalleryCandidate] = []
        compared = 0
        for gallery_id, index in list(self._indexes.items()):
            compared += len(index)
            negatives = self._negatives.get(gallery_id)
            found += [GalleryCandidate(m.subject_pk, m.face_id, m.similarity, self._gallery_names[gallery_id],
                                       negatives.nearest(m.subject_pk, embedding) if negatives else None)
                      for m in index.search(embedding, k)]
        found.sort(key=lambda c: -c.similarity)
        return found[:k], compared

    def subject(self, subject_pk: str) -> Subject | None:
        """None if removed since (its event is on its way)."""
        return self.store.subjects_by_pk([subject_pk]).get(subject_pk)
