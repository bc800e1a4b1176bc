"""Erasing a subject: everything of that person, everywhere, and an audit row that says who did it when.

In order:
1. the audit row (``erasures``) is written: from then on a sighting naming the
   subject that the writer stores, and a retroactive naming, is stored erased;
2. the subject's sightings (those naming it, and those of the face groups
   promoted to it) lose crop, embedding, name and group, in the database and
   the search index; they stay as bare events (camera, time), so the sequence
   numbers clients follow stay whole; sightings naming it as a runner-up stop
   doing so;
3. its face groups (grouping), with their faces' crops and embeddings and their
   index entries, and the faces of its sightings grouping placed in other groups;
4. the subject itself (repo): its faces, thumbnails, negatives, original images
   on disk no other face shares, and the index entries (cameras drop it on the
   subject.removed event);
5. on SQLite, the write-ahead log folded into the database file (deleted rows
   are overwritten: secure_delete), then the audit row gets the counts.
The subject is deleted last, so an erasure that fails half-way can be asked for
again and finishes the work. The audit row names the subject by its opaque key
only, never by its id or name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from events import SubjectErased
from repo.events import EventPublisher, tenant_topic

from .service import SIGHTINGS_KIND, SightingService

__all__ = ("GroupHistory", "Erased", "SubjectEraser")


class GroupHistory(Protocol):
    """Grouping's part in an erasure (grouping.service.GroupingService has it)."""

    async def promoted_groups(self, tenant_id: str, gallery: str, subject_id: str) -> list[str]: ...

    async def erase_groups(self, tenant_id: str, group_ids: Sequence[str]) -> int: ...

    async def erase_faces_of_events(self, tenant_id: str, event_ids: Sequence[str]) -> int: ...


@dataclass(slots=True, frozen=True)
class Erased:
    audit_id: str
    counts: dict[str, int]


class SubjectEraser:
    def __init__(self, service: SightingService, groups: GroupHistory | None, events: EventPublisher) -> None:
        self.service = service
        self.groups = groups
        self.events = events

    async def erase(self, tenant_id: str, gallery_name: str, subject_id: str, actor: str) -> Erased:
        repo, store = self.service.repo, self.service.store
        gallery = await repo.gallery(tenant_id, gallery_name)
        subject = await repo.subject(gallery, subject_id)
        audit_id = await asyncio.to_thread(store.open_erasure, tenant_id, subject.pk, actor)
        group_ids = await self.groups.promoted_groups(tenant_id, gallery.name, subject.id) if self.groups else []
        origin = subject.meta.get("promoted_from_group")
        if self.groups is not None and isinstance(origin, str) and origin not in group_ids:
            group_ids.append(origin)
        erased = await asyncio.to_thread(store.erase, tenant_id, subject.pk, group_ids)
        await asyncio.to_thread(self.service.index.remove, tenant_id, erased.sightings)
        group_faces = 0
        if self.groups is not None:
            group_faces += await self.groups.erase_groups(tenant_id, group_ids)
            # Faces of his sightings that grouping put elsewhere (named after the fact, from another group).
            group_faces += await self.groups.erase_faces_of_events(tenant_id, erased.events)
        faces = await repo.faces_of_subject(subject)
        negatives = await repo.negatives_of_subject(subject)
        keys = {f.image_key for f in faces if f.image_key}
        await repo.delete_subject(gallery, subject)
        images = sum([not await asyncio.to_thread(repo.images.exists, key) for key in keys])
        await asyncio.to_thread(store.compact)
        counts = {"faces": len(faces), "negatives": len(negatives), "images": images,
                  "sightings": len(erased.sightings), "crops": erased.crops, "embeddings": erased.embeddings,
                  "runner_up_mentions": erased.mentions, "groups": len(group_ids), "group_faces": group_faces}
        await asyncio.to_thread(store.close_erasure, audit_id, counts)
        self.events.publish(tenant_topic(tenant_id, SIGHTINGS_KIND),
                            SubjectErased(tenant=tenant_id, erasure=audit_id, counts=counts))
        return Erased(audit_id, counts)
