"""In-memory indexes of galleries, kept equal to the database on every node.

Built from the database, then changed by the repo's events (/topic/repo.events),
whichever node made the change, in each gallery's version order
(repo/sync.py): an event that arrives before the one it follows waits for it,
and a version that never arrives within the grace period gets the gallery
reloaded from a snapshot of the database. The API's repo index and each
camera's galleries (watcher/galleries.py) are mirrors; a mirror's ``scope``
says which galleries it follows.

Thread-safe: events arrive on the bus client's thread, changes made here on
the event loop, reloads in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from dataclasses import dataclass

from events import (
    EventError, FaceAdded, FaceRemoved, GalleryRemoved, GalleryRenamed, NegativeAdded, NegativeRemoved, RepoEvent,
    SubjectMerged, SubjectRemoved, decode_as, decode_vector,
)

from .index import GalleryIndex, NegativeIndex, SearchOptions
from .store import RepoStore
from .sync import Sequencer, VersionWaiters

__all__ = ("GalleryMirror", "MirroredGallery")

log = logging.getLogger(__name__)

Scope = Callable[[str, str], bool]  # (tenant id, gallery name) -> whether a gallery not held yet is followed


def _everything(tenant_id: str, name: str) -> bool:
    return True


@dataclass(slots=True)
class MirroredGallery:
    id: str
    tenant_id: str
    name: str
    index: GalleryIndex
    negatives: NegativeIndex


class GalleryMirror:
    def __init__(self, store: RepoStore, dim: int, model_id: str, search: SearchOptions = SearchOptions(),
                 scope: Scope = _everything, tenant_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``tenant_id``: the one tenant whose galleries ``scope`` may take (None: any)."""
        self.store = store
        self.tenant_id = tenant_id
        self.dim = dim
        self.model_id = model_id
        self.search = search
        self.scope = scope
        self._galleries: dict[str, MirroredGallery] = {}
        self._sequencer: Sequencer[str, RepoEvent] = Sequencer(clock)
        self._waiters: VersionWaiters[str] = VersionWaiters()
        self._lock = threading.RLock()  # one change at a time: an add and a remove of one face cannot swap
        self._reloading = threading.Lock()  # one reload at a time: a later snapshot is never replaced by an older one
        self.reloads = 0

    # -- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return sum(len(g.index) for g in self._galleries.values())

    def galleries(self) -> list[MirroredGallery]:
        with self._lock:
            return list(self._galleries.values())

    def _state(self, gallery_id: str, tenant_id: str = "", name: str = "") -> MirroredGallery:
        state = self._galleries.get(gallery_id)
        if state is None:
            state = self._galleries[gallery_id] = MirroredGallery(
                gallery_id, tenant_id, name, GalleryIndex(self.dim, options=self.search), NegativeIndex())
        return state

    def index(self, gallery_id: str) -> GalleryIndex:
        """The gallery's index (empty for a gallery without faces, or not known yet)."""
        with self._lock:
            return self._state(gallery_id).index

    def negatives(self, gallery_id: str) -> NegativeIndex:
        with self._lock:
            return self._state(gallery_id).negatives

    def applied(self, gallery_id: str) -> int:
        """The gallery version this mirror holds."""
        with self._lock:
            return self._sequencer.applied(gallery_id)

    # -- following ---------------------------------------------------------------------
    def apply(self, message: RepoEvent | bytes | str | Mapping[str, Any]) -> None:
        """One /topic/repo.events message (or this node's own change); other events are ignored."""
        try:
            event = decode_as(message, RepoEvent)
        except EventError as exc:
            log.warning("ignored a repo event: %s", exc)
            return
        if event is None:
            return
        with self._lock:
            if event.gallery_id not in self._galleries and not self.scope(event.tenant, event.gallery):
                return
            if event.version is None:  # changes nothing an index holds (subject.updated)
                return
            for ready in self._sequencer.offer(event.gallery_id, event.version, event):
                self._apply(ready)
            self._wake()

    def _apply(self, event: RepoEvent) -> None:
        try:
            self._apply_event(event)
        except (KeyError, TypeError, ValueError) as exc:  # e.g. a vector of another size: read the database
            log.warning("could not apply %s %s (%s); reloading from the database", event.TYPE, event.id, exc)
            self._sequencer.mark_gap(event.gallery_id)

    def _apply_event(self, event: RepoEvent) -> None:
        if isinstance(event, GalleryRemoved):
            self._galleries.pop(event.gallery_id, None)
            self._sequencer.end(event.gallery_id)
            return
        state = self._state(event.gallery_id, event.tenant, event.gallery)
        match event:
            case FaceAdded(model_id=model_id) if model_id != self.model_id:
                pass  # another embedding model's vector cannot be compared with ours
            case FaceAdded():
                vector = decode_vector(event.embedding)
                if vector is None:  # a copy without its vector (it cannot be followed): read the database
                    self._sequencer.mark_gap(event.gallery_id)
                elif not state.index.contains(event.face_id):
                    state.index.add([event.face_id], [event.subject_pk], vector[None, :])
            case FaceRemoved():
                state.index.remove([event.face_id])
            case SubjectRemoved():
                state.index.remove(event.face_ids)
                state.negatives.remove_subject(event.subject_pk)
            case SubjectMerged():
                state.index.reassign(event.face_ids, event.subject_pk)
                state.negatives.reassign(event.merged_pk, event.subject_pk)
            case NegativeAdded() if event.model_id == self.model_id:
                vector = decode_vector(event.embedding)
                if vector is None:
                    self._sequencer.mark_gap(event.gallery_id)
                else:
                    state.negatives.add(event.negative_id, event.subject_pk, vector)
            case NegativeRemoved():
                state.negatives.remove([event.negative_id])
            case GalleryRenamed():
                state.name = event.gallery

    def when_applied(self, gallery_id: str, version: int, callback: Callable[[], None]) -> int | None:
        """Call ``callback`` (from whichever thread applies it) once the mirror holds ``version`` of
        the gallery; None if it does already (then it is not called), else a token for ``forget``."""
        with self._lock:
            return None if self._holds(gallery_id, version) else self._waiters.add(gallery_id, version, callback)

    def forget(self, token: int) -> None:
        with self._lock:
            self._waiters.forget(token)

    def _holds(self, gallery_id: str, version: int) -> bool:
        return self._sequencer.applied(gallery_id) >= version or self._sequencer.ended(gallery_id)

    def _wake(self) -> None:
        self._waiters.wake(self._holds)

    # -- reading the database --------------------------------------------------------------
    def load(self, gallery_ids: list[str] | None = None) -> int:
        """Read the galleries (default: every one in scope) from the database; returns the face count."""
        if gallery_ids is None:
            gallery_ids = [g.id for g in self.store.all_galleries(self.tenant_id) if self.scope(g.tenant_id, g.name)]
        for gallery_id in gallery_ids:
            self.reload(gallery_id)
        return len(self)

    def reload(self, gallery_id: str) -> None:
        """The gallery from one snapshot of the database, then the events held beyond its version.
        Blocking: call it off the event loop."""
        with self._reloading:
            with self._lock:
                self._sequencer.begin_reload(gallery_id)
            index = GalleryIndex(self.dim, options=self.search)
            try:
                found = self.store.read_gallery(gallery_id, self.model_id, index.add)
            except BaseException:
                with self._lock:
                    self._sequencer.abort_reload(gallery_id)
                raise
            with self._lock:
                self.reloads += 1
                if found is None:
                    self._galleries.pop(gallery_id, None)
                    ready = self._sequencer.end_reload(gallery_id, None)
                else:
                    gallery, negatives = found
                    state = MirroredGallery(gallery_id, gallery.tenant_id, gallery.name, index, NegativeIndex())
                    for negative in negatives:
                        state.negatives.add(negative.id, negative.subject_pk, negative.embedding)
                    self._galleries[gallery_id] = state
                    ready = self._sequencer.end_reload(gallery_id, gallery.version)
                for event in ready:
                    self._apply(event)
                self._wake()

    def due(self, grace_s: float) -> list[str]:
        """Galleries whose missing version has not come within ``grace_s``: to reload."""
        with self._lock:
            return self._sequencer.due(grace_s)

    def reconcile(self) -> int:
        """Compare every gallery's version with the database's (one cheap query) and expect the
        versions this mirror lacks: a gallery whose events do not come within the grace period is
        then due for a reload (``due``), as is one the database no longer has (the reload confirms
        it is gone: it may also be one created after the query). Returns how many were behind."""
        in_db = {g.id: g for g in self.store.all_galleries(self.tenant_id)}
        behind = 0
        with self._lock:
            for gallery_id in self._galleries:
                if gallery_id not in in_db:
                    self._sequencer.mark_gap(gallery_id)
                    behind += 1
            for gallery in in_db.values():
                if gallery.id not in self._galleries and not self.scope(gallery.tenant_id, gallery.name):
                    continue
                if self._sequencer.applied(gallery.id) < gallery.version:
                    self._sequencer.expect(gallery.id, gallery.version)
                    behind += 1
        return behind

    def __iter__(self) -> Iterator[MirroredGallery]:
        return iter(self.galleries())
