"""GroupingService: unknown faces become groups of people, independent of transport.

A face joins the group with the highest average-linkage similarity when that
is at least ``threshold``, else it starts a group. ``refine`` merges groups
whose average linkage has reached ``merge_threshold`` (faces placed early may
have split a person). The database is the truth; the in-memory index per
tenant follows each committed change; events go to /topic/grouping.events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import BadParam, Conflict, NotFound
from repo.events import EventPublisher
from repo.service import EmbeddedFace, FaceRepository

from .clusters import GroupIndex
from .store import AlreadyPlaced, Group, GroupFace, GroupGone, GroupStore, NewFace

__all__ = ("GroupingOptions", "GroupingService", "GROUPING_EVENTS")

GROUPING_EVENTS = "/topic/grouping.events"

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class GroupingOptions:
    threshold: float = 0.52
    merge_threshold: float = 0.52
    promote_faces: int = 5  # the best faces a promoted subject is enrolled with


class GroupingService:
    def __init__(self, store: GroupStore, repo: FaceRepository, events: EventPublisher,
                 options: GroupingOptions) -> None:
        self.store = store
        self.repo = repo
        self.events = events
        self.options = options
        self.dim = repo.analyzer.embedder.dim
        self.model_id = repo.analyzer.embedder.model_id
        self._indexes: dict[str, GroupIndex] = {}  # tenant -> its groups
        # Placement reads the index and then writes: one at a time, so two faces
        # of a new person cannot both start a group.
        self._place_lock = asyncio.Lock()

    def _index(self, tenant_id: str) -> GroupIndex:
        index = self._indexes.get(tenant_id)
        if index is None:
            index = self._indexes[tenant_id] = GroupIndex(self.dim)
        return index

    async def replace_embeddings(self, faces: Sequence[tuple[str, GroupFace]], vectors: Sequence[np.ndarray]) -> int:
        """Grouped faces re-embedded by the current model (grouping/reembed.py): stored, then counted in
        their groups' index entries. They stay in the groups the old model put them in."""
        by_id = {face.id: (tenant, np.asarray(v, np.float32)) for (tenant, face), v in zip(faces, vectors)}
        # Under the placement lock: a move or removal sees the face either before (another model's,
        # not in the index) or after (in the index, in the group it is in now).
        async with self._place_lock:
            stored = await asyncio.to_thread(self.store.replace_embeddings, {i: v for i, (_, v) in by_id.items()},
                                             self.model_id)
            for face_id, group_id in stored.items():  # the group it is in now, read with the write
                tenant, vector = by_id[face_id]
                self._index(tenant).add(group_id, vector[None, :])
        return len(stored)

    def load(self) -> int:
        count = 0
        for tenant_id, group_id, embedding in self.store.iter_all(self.model_id):
            self._index(tenant_id).add(group_id, embedding[None, :])
            count += 1
        return count

    def _event(self, kind: str, tenant_id: str, **fields: Any) -> None:
        self.events.publish(GROUPING_EVENTS, {"type": kind, "tenant": tenant_id, "time": time.time(), **fields})

    # -- placing faces -----------------------------------------------------------------
    async def add_face(self, tenant_id: str, face: NewFace) -> tuple[str, str, bool]:
        """Group one face; returns (group id, face id, whether the group is new).

        A face of a watcher event that was placed before (a redelivery; another node first) is not placed
        again: that placement is returned. A group deleted or merged away elsewhere since this node's index
        saw it is dropped from the index and the face placed again, never lost."""
        if face.model_id != self.model_id:
            raise BadParam(f"embedding of model {face.model_id!r} cannot be grouped with {self.model_id!r}", "model_id")
        vector = np.asarray(face.embedding, np.float32).reshape(self.dim)
        async with self._place_lock:
            index = self._index(tenant_id)
            while True:  # each GroupGone removes a group from the index: this ends
                placement = index.place(vector, self.options.threshold)
                try:
                    group_id, face_id = await asyncio.to_thread(self.store.add_face, tenant_id, placement.group,
                                                                face)
                    break
                except GroupGone:
                    log.warning("grouping: group %s is gone (changed on another node); placing the face again",
                                placement.group)
                    assert placement.group is not None  # a new group cannot be gone
                    index.drop(placement.group)
                except AlreadyPlaced as placed:
                    return placed.group_id, placed.face_id, False
            index.add(group_id, vector[None, :])
        created = placement.group is None
        self._event("group.created" if created else "group.grown", tenant_id, group=group_id, face=face_id,
                    camera=face.camera, track=face.track, event=face.event_id,
                    similarity=round(placement.similarity, 4))
        return group_id, face_id, created

    async def add_image(self, tenant_id: str, data: bytes, *, source: str = "upload",
                        job_item: str | None = None) -> list[dict[str, Any]]:
        """Every face of one image, grouped. ``job_item``: a batch job's item; the faces it placed
        before a crash (the same image gives the same faces in the same order) are not placed again."""
        faces = await self.repo.analyze(data)
        done = await asyncio.to_thread(self.store.faces_of_job_item, tenant_id, job_item) if job_item else {}
        placed = []
        for position, face in enumerate(faces):
            if face.embedding is None:
                continue
            quality = face.quality.score if face.quality else 0.0
            key = f"{job_item}#{position}" if job_item else None
            if key in done:
                group_id, face_id = done[key]
                created = False  # it was placed before the crash; whether it made its group is not kept
            else:
                crop = face.aligned
                new = NewFace(face.embedding, self.model_id, source, time.time(), quality,
                              crop=_jpeg(crop) if crop is not None else None, job_item=key)
                group_id, face_id, created = await self.add_face(tenant_id, new)
            placed.append({"group": group_id, "face": face_id, "new_group": created,
                           "box": [round(float(v), 1) for v in face.box], "quality": round(quality, 4)})
        return placed

    async def refine(self, tenant_id: str) -> int:
        """Merge groups that have drifted together; returns how many merges."""
        merges = 0
        async with self._place_lock:
            index = self._index(tenant_id)
            for into, other, similarity in index.close_pairs(self.options.merge_threshold):
                if into not in index or other not in index:
                    continue  # one of them was merged already in this pass
                await asyncio.to_thread(self.store.merge, tenant_id, into, [other])
                index.merge(into, other)
                merges += 1
                self._event("group.merged", tenant_id, group=into, merged=[other], similarity=round(similarity, 4))
        return merges

    # -- reads ------------------------------------------------------------------------------
    async def list_groups(self, tenant_id: str, *, camera: str | None, since: float | None, until: float | None,
                          status: str | None, offset: int, limit: int) -> tuple[list[Group], int]:
        """A page of the tenant's groups (filtered) and how many match."""
        return await asyncio.to_thread(self.store.list_groups, tenant_id, camera=camera, since=since, until=until,
                                       status=status, offset=offset, limit=limit)

    async def group(self, tenant_id: str, group_id: str) -> Group:
        return await asyncio.to_thread(self.store.group, tenant_id, group_id)

    async def faces(self, tenant_id: str, group_id: str) -> list[GroupFace]:
        """The faces of a group."""
        return await asyncio.to_thread(self.store.faces, tenant_id, group_id)

    async def face(self, tenant_id: str, face_id: str) -> GroupFace:
        return await asyncio.to_thread(self.store.face, tenant_id, face_id)

    async def crop(self, tenant_id: str, face_id: str) -> bytes | None:
        """A face's JPEG crop; None when it was stored without one."""
        return await asyncio.to_thread(self.store.crop, tenant_id, face_id)

    # -- operations -----------------------------------------------------------------------
    async def merge(self, tenant_id: str, into: str, others: Sequence[str]) -> Group:
        others = [g for g in dict.fromkeys(others) if g != into]
        if not others:
            raise BadParam("name at least one other group to merge", "groups")
        async with self._place_lock:
            await asyncio.to_thread(self.store.merge, tenant_id, into, others)
            for other in others:
                self._index(tenant_id).merge(into, other)
        self._event("group.merged", tenant_id, group=into, merged=list(others))
        return await asyncio.to_thread(self.store.group, tenant_id, into)

    async def move_faces(self, tenant_id: str, face_ids: Sequence[str], to_group: str) -> Group:
        async with self._place_lock:
            faces = [await asyncio.to_thread(self.store.face, tenant_id, f) for f in face_ids]
            await asyncio.to_thread(self.store.move_faces, tenant_id, list(face_ids), to_group)
            index = self._index(tenant_id)
            for face in faces:
                if face.model_id == self.model_id:  # another model's faces are not in the index
                    index.remove(face.group_id, face.embedding[None, :])
                    index.add(to_group, face.embedding[None, :])
        self._event("group.changed", tenant_id, group=to_group, moved=list(face_ids))
        return await asyncio.to_thread(self.store.group, tenant_id, to_group)

    async def remove_face(self, tenant_id: str, face_id: str) -> None:
        async with self._place_lock:
            face = await asyncio.to_thread(self.store.remove_face, tenant_id, face_id)
            if face.model_id == self.model_id:  # another model's faces are not in the index
                self._index(tenant_id).remove(face.group_id, face.embedding[None, :])
        self._event("group.changed", tenant_id, group=face.group_id, removed=[face_id])

    async def delete(self, tenant_id: str, group_id: str) -> None:
        async with self._place_lock:
            await asyncio.to_thread(self.store.delete_group, tenant_id, group_id)
            self._index(tenant_id).drop(group_id)
        self._event("group.deleted", tenant_id, group=group_id)

    async def promoted_groups(self, tenant_id: str, gallery: str, subject_id: str) -> list[str]:
        """The groups promoted to a subject: what erasing that subject erases of grouping."""
        return await asyncio.to_thread(self.store.promoted_to, tenant_id, gallery, subject_id)

    async def erase_groups(self, tenant_id: str, group_ids: Sequence[str]) -> int:
        """Delete groups with their faces (crops and embeddings) and index entries; returns the faces gone.
        Groups already gone are skipped: an erasure run again finishes what a failed one left."""
        faces = 0
        for group_id in group_ids:
            try:
                faces += (await self.group(tenant_id, group_id)).face_count
                await self.delete(tenant_id, group_id)
            except NotFound:
                continue
        return faces

    async def erase_faces_of_events(self, tenant_id: str, event_ids: Sequence[str]) -> int:
        """Remove the faces placed from these watcher events (wherever they are now); returns how many."""
        removed = 0
        for event_id in event_ids:
            placed = await asyncio.to_thread(self.store.face_of_event, event_id)
            if placed is None:
                continue
            try:
                await self.remove_face(tenant_id, placed[1])
                removed += 1
            except NotFound:  # another tenant's event id, or removed meanwhile
                continue
        return removed

    async def ignore(self, tenant_id: str, group_id: str, ignored: bool) -> Group:
        # Ignored groups stay in the index: that person's next faces join it
        # instead of starting new groups.
        group = await asyncio.to_thread(self.store.set_status, tenant_id, group_id, "ignored" if ignored else "active")
        self._event("group.ignored" if ignored else "group.changed", tenant_id, group=group_id)
        return group

    async def promote(self, tenant_id: str, group_id: str, gallery_name: str, subject_id: str, name: str) -> Group:
        """Make the group a subject of ``gallery_name``, enrolled with its best faces."""
        group = await asyncio.to_thread(self.store.group, tenant_id, group_id)
        if group.status == "promoted":
            raise Conflict(f"group {group_id!r} was already promoted to {group.subject}", "group")
        gallery = await self.repo.gallery(tenant_id, gallery_name)
        faces = [f for f in await asyncio.to_thread(self.store.faces, tenant_id, group_id)
                 if f.model_id == self.model_id][: self.options.promote_faces]
        if not faces:
            raise Conflict(f"the faces of group {group_id!r} are waiting to be re-embedded by the current model",
                           "group")
        crops = [await asyncio.to_thread(self.store.crop, tenant_id, f.id) for f in faces]
        subject = await self.repo.create_subject(gallery, subject_id, name, {"promoted_from_group": group_id})
        await self.repo.add_embedded_faces(gallery, subject, [
            EmbeddedFace(f.embedding, f.model_id, f.quality, crop) for f, crop in zip(faces, crops)])
        promoted = await asyncio.to_thread(self.store.set_status, tenant_id, group_id, "promoted",
                                           {"gallery": gallery_name, "subject": subject.id})
        self._event("group.promoted", tenant_id, group=group_id, gallery=gallery_name, subject=subject.id)
        return promoted


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
