"""The galleries one camera matches against, kept current from /topic/repo.events.

A GalleryMirror (repo/mirror.py) of the camera's galleries: built from the
database at start, then changed by events in each gallery's version order, so
an enrolment made through any node while a camera runs is recognised within
one event's delivery; a lost event is found by the next one of its gallery or
by ``maintain``'s periodic comparison with the database, and the gallery is
reloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import NotFound
from events import RepoEvent
from repo.index import SearchOptions
from repo.mirror import GalleryMirror
from repo.store import RepoStore, Subject
from repo.sync import SyncOptions

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


class GalleryFollower:
    def __init__(self, store: RepoStore, tenant_id: str, gallery_names: Sequence[str], dim: int, model_id: str,
                 search: SearchOptions = SearchOptions()) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.names = set(gallery_names)
        self.dim = dim
        self.model_id = model_id
        self.mirror = GalleryMirror(store, dim, model_id, search,
                                    scope=lambda tenant, name: tenant == tenant_id and name in self.names,
                                    tenant_id=tenant_id)

    def __len__(self) -> int:
        return len(self.mirror)

    def load(self) -> int:
        """Read every followed gallery from the database (then what arrived meanwhile applies on top)."""
        ids = []
        for name in sorted(self.names):
            try:
                ids.append(self.store.gallery(self.tenant_id, name).id)
            except NotFound:
                log.info("gallery %r does not exist yet; followed from its first enrolment", name)
        return self.mirror.load(ids)

    def apply(self, event: RepoEvent | bytes | str | Mapping[str, Any]) -> None:
        """One /topic/repo.events message (any tenant's; others are ignored)."""
        self.mirror.apply(event)

    def maintain(self, options: SyncOptions, reconcile: bool) -> None:
        """Reload the galleries whose gap is older than the grace period; ``reconcile``: first compare
        every version with the database. Blocking: the caller's own thread."""
        if reconcile:
            self.mirror.reconcile()
        for gallery_id in self.mirror.due(options.gap_grace_s):
            self.mirror.reload(gallery_id)

    def candidates(self, embedding: np.ndarray, k: int = 2) -> tuple[list[GalleryCandidate], int]:
        """The ``k`` closest subjects over every followed gallery, best first, and how many faces were compared."""
        found: list[GalleryCandidate] = []
        compared = 0
        for gallery in self.mirror.galleries():
            compared += len(gallery.index)
            negatives = gallery.negatives
            found += [GalleryCandidate(m.subject_pk, m.face_id, m.similarity, gallery.name,
                                       negatives.nearest(m.subject_pk, embedding) if len(negatives) else None)
                      for m in gallery.index.search(embedding, k)]
        found.sort(key=lambda c: -c.similarity)
        return found[:k], compared

    def subject(self, subject_pk: str) -> Subject | None:
        """None if removed since (its event is on its way)."""
        return self.store.subjects_by_pk([subject_pk]).get(subject_pk)
