"""SightingService: what the cameras saw, listed, followed and searched by face; independent of transport.

The database is the truth. The search index (index.py) follows it by sequence
number: the writer adds what it stores; before a search, rows another node
stored since are read in. Each stored sighting is announced on the tenant's
``/topic/tenant.<tenant>.sightings`` with its sequence number (see follow.py
for how a client catches up and then follows without losing or doubling one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import BadParam, Conflict, NotFound
from events import Event, GroupCreated, GroupDeleted, GroupMerged, SightingStored
from repo.events import EventPublisher, tenant_topic
from repo.service import FaceRepository
from vision.embedder import l2_normalise

from .index import SightingIndex
from .records import Retention, Sighting, SightingFilter
from .store import AuditRecord, SightingStore, Stored

__all__ = ("SightingService", "SIGHTINGS_KIND", "Probe", "Found", "GroupEmbeddings")

log = logging.getLogger(__name__)

SIGHTINGS_KIND = "sightings"  # the tenant's topic: /topic/tenant.<tenant>.sightings

# The embeddings of a face group's faces (grouping, when it runs): what a search "by group" looks for.
GroupEmbeddings = Callable[[str, str], Awaitable[np.ndarray]]


@dataclass(slots=True, frozen=True)
class Probe:
    """Whom to look for: exactly one of these."""

    image: bytes | None = None
    face_id: str | None = None
    sighting_id: str | None = None
    group_id: str | None = None
    subject: tuple[str, str] | None = None  # (gallery, subject id)


@dataclass(slots=True, frozen=True)
class Found:
    sighting: Sighting
    similarity: float


class SightingService:
    def __init__(self, store: SightingStore, index: SightingIndex, repo: FaceRepository, events: EventPublisher,
                 default_retention: Retention, group_embeddings: GroupEmbeddings | None = None) -> None:
        self.store = store
        self.index = index
        self.repo = repo
        self.events = events
        self.default_retention = default_retention
        self.group_embeddings = group_embeddings
        self.model_id = repo.analyzer.embedder.model_id

    # -- the index -----------------------------------------------------------------------
    def load_index(self) -> int:
        """Build the search index from the database (at start); returns the sightings indexed."""
        last = {tenant: self.store.last_seq(tenant) for tenant in self.store.tenants()}  # read before the rows
        total = 0
        for rows in self.store.index_rows(self.model_id):
            by_tenant: dict[str, list[Any]] = {}
            for row in rows:
                by_tenant.setdefault(row.tenant_id, []).append(row)
            for tenant, mine in by_tenant.items():
                total += self.index.add(tenant, [r.id for r in mine], np.stack([r.embedding for r in mine]),
                                        [r.seen_at for r in mine], [r.camera for r in mine])
        for tenant, seq in last.items():
            self.index.add(tenant, [], np.zeros((0, self.index.dim), np.float32), [], [], seq=seq)
        return total

    def _refresh(self, tenant_id: str) -> None:
        """Read in what was stored after the index's sequence number (by another node, or a batch whose
        numbers were not next in line)."""
        last = self.store.last_seq(tenant_id)
        if last <= self.index.seq(tenant_id):
            return
        for rows in self.store.index_rows(self.model_id, tenant_id, after=self.index.seq(tenant_id)):
            self.index.add(tenant_id, [r.id for r in rows], np.stack([r.embedding for r in rows]),
                           [r.seen_at for r in rows], [r.camera for r in rows])
        self.index.add(tenant_id, [], np.zeros((0, self.index.dim), np.float32), [], [], seq=last)

    def stored(self, stored: list[Stored]) -> None:
        """After a batch's commit (on the writer's thread): index the sightings and announce them."""
        by_tenant: dict[str, list[Stored]] = {}
        for item in stored:
            by_tenant.setdefault(item.sighting.tenant_id, []).append(item)
        for tenant, items in by_tenant.items():
            seqs = [i.sighting.seq for i in items]
            # The index's sequence number moves only over an unbroken run: a gap was filled by another node.
            in_line = min(seqs) == self.index.seq(tenant) + 1
            usable = [i for i in items if i.embedding is not None and i.sighting.model_id == self.model_id]
            vectors = np.stack([i.embedding for i in usable if i.embedding is not None]) if usable else \
                np.zeros((0, self.index.dim), np.float32)
            self.index.add(tenant, [i.sighting.id for i in usable], vectors, [i.sighting.seen_at for i in usable],
                           [i.sighting.camera for i in usable], seq=max(seqs) if in_line else None)
            topic = tenant_topic(tenant, SIGHTINGS_KIND)
            for item in items:
                self.events.publish(topic, SightingStored(tenant=tenant, sighting=item.sighting.to_json()))

    # -- reads -----------------------------------------------------------------------------
    async def sighting(self, tenant_id: str, sighting_id: str) -> Sighting:
        return await asyncio.to_thread(self.store.sighting, tenant_id, sighting_id)

    async def crop(self, tenant_id: str, sighting_id: str) -> bytes | None:
        return await asyncio.to_thread(self.store.crop, tenant_id, sighting_id)

    async def newest(self, tenant_id: str, f: SightingFilter, before: int | None, limit: int) -> list[Sighting]:
        return await asyncio.to_thread(self.store.newest, tenant_id, f, before, limit)

    async def after(self, tenant_id: str, f: SightingFilter, cursor: int, limit: int) -> tuple[list[Sighting], int]:
        return await asyncio.to_thread(self.store.after, tenant_id, f, cursor, limit)

    async def cursor_of_event(self, tenant_id: str, event_id: str) -> int:
        return await asyncio.to_thread(self.store.seq_of_event, tenant_id, event_id)

    async def subject_pk(self, tenant_id: str, gallery: str, subject_id: str) -> str:
        """A subject's key, to filter by; NotFound when the tenant has no such gallery or subject."""
        found = await self.repo.subject(await self.repo.gallery(tenant_id, gallery), subject_id)
        return found.pk

    # -- search by face -------------------------------------------------------------------
    async def probe_embedding(self, tenant_id: str, probe: Probe) -> np.ndarray:
        """The normalised embedding to look for (a template: the mean of several faces, for a subject or
        a group)."""
        if probe.image is not None:
            embedding, _ = await self.repo.embedding_of(probe.image, "file")
            return embedding
        if probe.face_id is not None:
            record, _ = await self.repo.face(tenant_id, probe.face_id)
            return self.repo.face_embedding(record)
        if probe.sighting_id is not None:
            vector, model_id = await asyncio.to_thread(self.store.embedding, tenant_id, probe.sighting_id)
            if vector is None or model_id != self.model_id:
                raise Conflict("this sighting keeps no embedding of the current model (past its retention, "
                               "erased, or of another model)", "sighting")
            return vector
        if probe.subject is not None:
            gallery = await self.repo.gallery(tenant_id, probe.subject[0])
            subject = await self.repo.subject(gallery, probe.subject[1])
            return l2_normalise((await self.repo.subject_embeddings(subject)).mean(axis=0))
        if probe.group_id is not None:
            if self.group_embeddings is None:
                raise NotFound("grouping is not enabled on this server", "group")
            return l2_normalise(np.asarray(await self.group_embeddings(tenant_id, probe.group_id)).mean(axis=0))
        raise BadParam("name whom to look for: an image, face_id, sighting, group or gallery + subject", "file")

    async def search(self, tenant_id: str, embedding: np.ndarray, *, limit: int, min_similarity: float,
                     start: float | None, end: float | None, cameras: list[str] | None) -> list[Found]:
        """The tenant's sightings of the face ``embedding`` is of, most similar first."""
        await asyncio.to_thread(self._refresh, tenant_id)
        hits = await asyncio.to_thread(self.index.search, tenant_id, embedding, limit, start=start, end=end,
                                       cameras=cameras, min_similarity=min_similarity)
        found = []
        for hit in hits:
            try:
                sighting = await self.sighting(tenant_id, hit.sighting_id)
            except NotFound:  # expired since the index saw it
                continue
            if sighting.has_embedding:  # the database is the truth: erased or past retention on another node
                found.append(Found(sighting, hit.similarity))
        return found

    # -- retention ----------------------------------------------------------------------------
    async def retention(self, tenant_id: str) -> tuple[Retention, bool]:
        """The tenant's retention, and whether it set its own (else the configured defaults)."""
        own = await asyncio.to_thread(self.store.retention, tenant_id)
        return (own, True) if own is not None else (self.default_retention, False)

    async def set_retention(self, tenant_id: str, value: Retention) -> None:
        await asyncio.to_thread(self.store.set_retention, tenant_id, value)

    async def erasure_log(self, tenant_id: str, limit: int) -> list[AuditRecord]:
        return await asyncio.to_thread(self.store.erasure_log, tenant_id, limit)

    # -- what grouping says of the faces it placed ------------------------------------------
    async def on_grouping_event(self, event: Event, pending: Callable[[str, str], None]) -> None:
        """Keep the sightings' face groups in step with grouping's events (placed, merged, deleted);
        ``pending(event id, group)`` remembers a placement whose sighting is not stored yet."""
        match event:
            case GroupCreated(event=str(placed)):  # and GroupGrown: a camera's face (its event id) placed
                if not await asyncio.to_thread(self.store.place_in_group, event.tenant, placed, event.group):
                    pending(placed, event.group)
            case GroupMerged():
                await asyncio.to_thread(self.store.merge_groups, event.tenant, event.group, event.merged)
            case GroupDeleted():
                await asyncio.to_thread(self.store.clear_group, event.tenant, event.group)
