"""GroupingService: unknown faces become groups of people, independent of transport.

A face joins the group with the highest average-linkage similarity when that
is at least ``threshold``, else it starts a group. ``refine`` merges groups
whose average linkage has reached ``merge_threshold`` (faces placed early may
have split a person). The database is the truth; the in-memory index per
tenant (a GroupMirror) follows each committed change, this node's and the other
nodes', in version order; events go to /topic/grouping.events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import BadParam, Conflict, NotFound, ServiceUnavailable
from events import (
    GROUPING_EVENTS, GroupChanged, GroupCreated, GroupDeleted, GroupGrown, GroupIgnored, GroupingEvent, GroupMerged,
    GroupPromoted, GroupReembedded, GroupRestored, MovedFace, ReembeddedFace, encode_vector,
)
from repo.events import EventPublisher
from repo.service import EmbeddedFace, FaceRepository
from repo.sync import wait_applied

from .clusters import GroupIndex
from .mirror import GroupMirror
from .store import AlreadyPlaced, Group, GroupFace, GroupGone, GroupStore, NewFace

__all__ = ("GroupingOptions", "GroupingService", "GROUPING_EVENTS")

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class GroupingOptions:
    threshold: float = 0.52
    merge_threshold: float = 0.52
    promote_faces: int = 5  # the best faces a promoted subject is enrolled with
    own_change_wait_s: float = 5.0  # see RepoOptions.own_change_wait_s


class GroupingService:
    def __init__(self, store: GroupStore, repo: FaceRepository, events: EventPublisher,
                 options: GroupingOptions) -> None:
        self.store = store
        self.repo = repo
        self.events = events
        self.options = options
        self.dim = repo.analyzer.embedder.dim
        self.model_id = repo.analyzer.embedder.model_id
        self.mirror = GroupMirror(store, self.dim, self.model_id)
        # Placement reads the index and then writes: one at a time, so two faces
        # of a new person cannot both start a group.
        self._place_lock = asyncio.Lock()

    def _index(self, tenant_id: str) -> GroupIndex:
        return self.mirror.index(tenant_id)

    async def version(self, tenant_id: str) -> int:
        """The tenant's grouping version in the database."""
        return await asyncio.to_thread(self.store.version, tenant_id)

    def indexed_version(self, tenant_id: str) -> int:
        """The tenant's grouping version this node's index holds."""
        return self.mirror.applied(tenant_id)

    def _change(self, kind: type[GroupingEvent], tenant_id: str, version: int, **fields: Any) -> None:
        """Apply a committed change to this node's index and announce it to the others."""
        event = kind(tenant=tenant_id, version=version, **fields)
        self.mirror.apply(event)
        self.events.publish(GROUPING_EVENTS, event)

    async def _indexed(self, tenant_id: str, version: int) -> None:
        """Until this node's index holds ``version`` (it may wait for another node's earlier change),
        for ``own_change_wait_s`` at most: the next placement must see this one."""
        if not await wait_applied(self.mirror.when_applied, self.mirror.forget, tenant_id, version,
                                  self.options.own_change_wait_s):
            log.warning("grouping of tenant %s: version %d not indexed within %.1fs (a reload is on its way)",
                        tenant_id, version, self.options.own_change_wait_s)

    async def replace_embeddings(self, faces: Sequence[tuple[str, GroupFace]], vectors: Sequence[np.ndarray]) -> int:
        """Grouped faces re-embedded by the current model (grouping/reembed.py): stored, then counted in
        their groups' index entries. They stay in the groups the old model put them in."""
        vectors_by_id = {face.id: np.asarray(v, np.float32) for (_, face), v in zip(faces, vectors)}
        # Under the placement lock: a move or removal sees the face either before (another model's,
        # not in the index) or after (in the index, in the group it is in now).
        async with self._place_lock:
            stored, versions = await asyncio.to_thread(self.store.replace_embeddings, vectors_by_id, self.model_id)
            for tenant, version in versions.items():  # each face in the group it is in now, read with the write
                self._change(GroupReembedded, tenant, version, faces=[
                    ReembeddedFace(face_id, group, encode_vector(vectors_by_id[face_id]))
                    for face_id, (owner, group) in stored.items() if owner == tenant])
        return len(stored)

    def load(self) -> int:
        """Every tenant's groups from the database; returns the face count."""
        return self.mirror.load()

    def _event(self, kind: type[GroupingEvent], tenant_id: str, **fields: Any) -> None:
        """A change the index does not follow (a status, a promotion): announced only."""
        self.events.publish(GROUPING_EVENTS, kind(tenant=tenant_id, **fields))

    # -- placing faces -----------------------------------------------------------------
    async def add_face(self, tenant_id: str, face: NewFace) -> tuple[str, str, bool]:
        """Group one face; returns (group id, face id, whether the group is new).

        A face of a watcher event that was placed before (a redelivery; another node first) is not placed
        again: that placement is returned. A group deleted or merged away elsewhere since this node's index
        saw it makes this node reload the tenant's groups and place the face again, never lose it."""
        if face.model_id != self.model_id:
            raise BadParam(f"embedding of model {face.model_id!r} cannot be grouped with {self.model_id!r}", "model_id")
        vector = np.asarray(face.embedding, np.float32).reshape(self.dim)
        async with self._place_lock:
            for _ in range(3):
                placement = self._index(tenant_id).place(vector, self.options.threshold)
                try:
                    group_id, face_id, version = await asyncio.to_thread(self.store.add_face, tenant_id,
                                                                         placement.group, face)
                    break
                except GroupGone:
                    # Deleted or merged away on another node, and that change not yet applied here: catch up
                    # from the database (the group leaves the index) and place the face again.
                    log.warning("grouping: group %s is gone (changed on another node); reloading tenant %s's "
                                "groups and placing the face again", placement.group, tenant_id)
                    await asyncio.to_thread(self.mirror.reload, tenant_id)
                except AlreadyPlaced as placed:
                    return placed.group_id, placed.face_id, False
            else:  # the groups keep changing under us: the caller retries later (a queued face is redelivered)
                raise ServiceUnavailable(f"tenant {tenant_id}'s groups changed three times while placing a face")
            created = placement.group is None
            self._change(GroupCreated if created else GroupGrown, tenant_id, version, group=group_id,
                         face=face_id, camera=face.camera, track=face.track, event=face.event_id,
                         similarity=round(placement.similarity, 4), model_id=face.model_id,
                         embedding=encode_vector(vector))
            await self._indexed(tenant_id, version)  # the next placement sees this one
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
                version = await asyncio.to_thread(self.store.merge, tenant_id, into, [other])
                merges += 1
                self._change(GroupMerged, tenant_id, version, group=into, merged=[other],
                             similarity=round(similarity, 4))
                await self._indexed(tenant_id, version)
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
        if not others:  # a group merged with itself alone is already merged
            return await asyncio.to_thread(self.store.group, tenant_id, into)
        async with self._place_lock:
            version = await asyncio.to_thread(self.store.merge, tenant_id, into, others)
            self._change(GroupMerged, tenant_id, version, group=into, merged=list(others))
            await self._indexed(tenant_id, version)
        return await asyncio.to_thread(self.store.group, tenant_id, into)

    async def move_faces(self, tenant_id: str, face_ids: Sequence[str], to_group: str) -> Group:
        async with self._place_lock:
            moved = await asyncio.to_thread(self.store.move_faces, tenant_id, list(face_ids), to_group)
            self._change(GroupChanged, tenant_id, moved.version, group=to_group, moved=list(face_ids),
                         faces=[_moved(f) for f in moved.faces])
            await self._indexed(tenant_id, moved.version)
        return await asyncio.to_thread(self.store.group, tenant_id, to_group)

    async def remove_face(self, tenant_id: str, face_id: str) -> None:
        async with self._place_lock:
            face, version = await asyncio.to_thread(self.store.remove_face, tenant_id, face_id)
            self._change(GroupChanged, tenant_id, version, group=face.group_id, removed=[face_id],
                         faces=[_moved(face)])
            await self._indexed(tenant_id, version)

    async def delete(self, tenant_id: str, group_id: str) -> None:
        async with self._place_lock:
            version = await asyncio.to_thread(self.store.delete_group, tenant_id, group_id)
            self._change(GroupDeleted, tenant_id, version, group=group_id)
            await self._indexed(tenant_id, version)

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
        self._event(GroupIgnored if ignored else GroupRestored, tenant_id, group=group_id)
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
        self._event(GroupPromoted, tenant_id, group=group_id, gallery=gallery_name, subject=subject.id)
        return promoted


def _moved(face: GroupFace) -> MovedFace:
    """A face an event moves or removes: the index takes its vector out of the group it was in."""
    return MovedFace(face.id, face.group_id, face.model_id, encode_vector(face.embedding))


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
