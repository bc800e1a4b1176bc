"""Groups and their faces in the repo's database (component "grouping").

Every write is one transaction: a face and its group's counters change
together, a merge moves faces and deletes the emptied groups at once. Each
write that changes what the in-memory group index holds also takes the
tenant's next grouping version (repo/sync.py), returned to the caller, whose
event carries it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger, Column, Connection, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text, case, delete,
    func, insert, select, text, update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sqlalchemy.exc import IntegrityError

from api.errors import NotFound
from repo import schema as repo_schema
from repo.store import RepoStore, read_snapshot

__all__ = ("AlreadyPlaced", "Group", "GroupFace", "GroupGone", "GroupStore", "NewFace", "Moved")

groups = Table(
    "face_groups", repo_schema.metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # active | ignored | promoted
    Column("subject", Text),  # JSON {gallery, subject} once promoted
    Column("face_count", Integer, nullable=False),
    Column("best_face", String(64)),  # the member with the highest quality: the group's picture
    Column("best_quality", Float, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_face_groups_tenant_seen", "tenant_id", "last_seen"),
)
group_faces = Table(
    "group_faces", repo_schema.metadata,
    Column("id", String(64), primary_key=True),
    Column("group_id", String(64), ForeignKey("face_groups.id", ondelete="CASCADE"), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # camera | upload
    Column("camera", String(64)),
    Column("track", Integer),
    Column("seen_at", Float, nullable=False),
    Column("quality", Float, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("crop", LargeBinary),  # JPEG
    Column("job_item", String(130)),  # "<job>/<item>#<face>" for faces a batch job placed: a resumed job skips them
    Column("event_id", String(64)),  # the face.unknown it came from: a redelivered event is not placed twice
    Index("ix_group_faces_group", "group_id"),
    Index("ix_group_faces_tenant_camera", "tenant_id", "camera"),
    Index("ux_group_faces_event", "event_id", unique=True),
)


# Each tenant's grouping change sequence (its groups are one stream: placement compares a face
# with all of them).
grouping_versions = Table(
    "grouping_versions", repo_schema.metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("version", BigInteger, nullable=False),
)


def _v1(conn: Connection) -> None:
    groups.create(conn, checkfirst=True)
    group_faces.create(conn, checkfirst=True)


def _v2_job_item(conn: Connection) -> None:
    repo_schema.add_column(conn, "group_faces", "job_item", "VARCHAR(130)")
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_group_faces_job_item ON group_faces (job_item)"))


def _v3_event_id(conn: Connection) -> None:
    repo_schema.add_column(conn, "group_faces", "event_id", "VARCHAR(64)")
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_group_faces_event ON group_faces (event_id)"))


def _v4_versions(conn: Connection) -> None:
    grouping_versions.create(conn, checkfirst=True)


MIGRATIONS: list[repo_schema.Migration] = [(1, _v1), (2, _v2_job_item), (3, _v3_event_id), (4, _v4_versions)]


class GroupGone(Exception):
    """The group a face was placed in was deleted or merged away (by another node) since the index saw it."""


class AlreadyPlaced(Exception):
    """A face of this watcher event is stored already (a redelivery; or another node placed it first)."""

    def __init__(self, group_id: str, face_id: str) -> None:
        super().__init__(group_id, face_id)
        self.group_id, self.face_id = group_id, face_id


def _bump(conn: Connection, tenant_id: str) -> int:
    """Take the tenant's next grouping version in the caller's transaction. The row lock holds the
    tenant's other grouping writers until this transaction ends: versions commit in order."""
    upsert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(upsert(grouping_versions).values(tenant_id=tenant_id, version=1).on_conflict_do_update(
        index_elements=[grouping_versions.c.tenant_id], set_={"version": grouping_versions.c.version + 1}))
    return int(conn.execute(select(grouping_versions.c.version)
                            .where(grouping_versions.c.tenant_id == tenant_id)).scalar_one())


@dataclass(slots=True, frozen=True)
class NewFace:
    """A face to group, from a watcher's face.unknown or an uploaded image."""

    embedding: np.ndarray
    model_id: str
    source: str
    seen_at: float
    quality: float
    camera: str | None = None
    track: int | None = None
    crop: bytes | None = None
    job_item: str | None = None  # set by a batch job: see GroupStore.faces_of_job_item
    event_id: str | None = None  # the watcher event it came from: see GroupStore.face_of_event


@dataclass(slots=True, frozen=True)
class Group:
    id: str
    tenant_id: str
    status: str
    subject: dict[str, str] | None
    face_count: int
    best_face: str | None
    first_seen: float
    last_seen: float
    created_at: float
    cameras: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "subject": self.subject, "face_count": self.face_count,
                "best_face": self.best_face, "first_seen": self.first_seen, "last_seen": self.last_seen,
                "created_at": self.created_at, "cameras": list(self.cameras)}


@dataclass(slots=True, frozen=True)
class GroupFace:
    id: str
    group_id: str
    source: str
    camera: str | None
    track: int | None
    seen_at: float
    quality: float
    model_id: str
    embedding: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group_id, "source": self.source, "camera": self.camera,
                "track": self.track, "seen_at": self.seen_at, "quality": round(self.quality, 4)}


def _group(row: Any, cameras: tuple[str, ...] = ()) -> Group:
    return Group(row.id, row.tenant_id, row.status, json.loads(row.subject) if row.subject else None, row.face_count,
                 row.best_face, row.first_seen, row.last_seen, row.created_at, cameras)


def _face(row: Any) -> GroupFace:
    return GroupFace(row.id, row.group_id, row.source, row.camera, row.track, row.seen_at, row.quality, row.model_id,
                     np.frombuffer(row.embedding, np.float32))


_FACE_COLUMNS = [c for c in group_faces.c if c.name != "crop"]


@dataclass(slots=True, frozen=True)
class Moved:
    """What ``move_faces`` did: the faces as they were before (their groups then), the groups
    they left, and the version of the change."""

    faces: list[GroupFace]
    left: list[str]
    version: int


class GroupStore:
    def __init__(self, store: RepoStore) -> None:
        self.engine = store.engine
        store.migrate_component("grouping", MIGRATIONS)

    # -- writes ------------------------------------------------------------------------
    def add_face(self, tenant_id: str, group_id: str | None, face: NewFace) -> tuple[str, str, int]:
        """Store ``face`` in ``group_id`` (None: a new group). Returns (group id, face id, version).

        Raises ``GroupGone`` when ``group_id`` no longer exists, ``AlreadyPlaced`` when a face of the same
        event is stored already."""
        try:
            return self._add_face(tenant_id, group_id, face)
        except IntegrityError:
            placed = self.face_of_event(face.event_id) if face.event_id else None
            if placed is None:
                raise
            raise AlreadyPlaced(*placed) from None

    def _add_face(self, tenant_id: str, group_id: str | None, face: NewFace) -> tuple[str, str, int]:
        face_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            version = _bump(conn, tenant_id)
            if group_id is not None:
                # Locked until this transaction ends: a delete or merge elsewhere waits for the face, or wins.
                found = conn.execute(select(groups.c.id).where(groups.c.id == group_id, groups.c.tenant_id == tenant_id)
                                     .with_for_update()).first()
                if found is None:
                    raise GroupGone(group_id)
            if group_id is None:
                group_id = uuid.uuid4().hex
                conn.execute(insert(groups).values(
                    id=group_id, tenant_id=tenant_id, status="active", subject=None, face_count=0, best_face=None,
                    best_quality=-1.0, first_seen=face.seen_at, last_seen=face.seen_at, created_at=time.time()))
            conn.execute(insert(group_faces).values(
                id=face_id, group_id=group_id, tenant_id=tenant_id, source=face.source, camera=face.camera,
                track=face.track, seen_at=face.seen_at, quality=face.quality,
                embedding=np.asarray(face.embedding, np.float32).tobytes(), model_id=face.model_id, crop=face.crop,
                job_item=face.job_item, event_id=face.event_id))
            # Counters move by one face here (no aggregate over the group: this is the hot path).
            g = groups.c
            conn.execute(update(groups).where(g.id == group_id).values(
                face_count=g.face_count + 1,
                first_seen=case((g.first_seen > face.seen_at, face.seen_at), else_=g.first_seen),
                last_seen=case((g.last_seen < face.seen_at, face.seen_at), else_=g.last_seen)))
            conn.execute(update(groups).where(g.id == group_id, g.best_quality < face.quality)
                         .values(best_face=face_id, best_quality=face.quality))
        return group_id, face_id, version

    def face_of_event(self, event_id: str) -> tuple[str, str] | None:
        """(group id, face id) of the face placed from watcher event ``event_id``, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(select(group_faces.c.group_id, group_faces.c.id)
                               .where(group_faces.c.event_id == event_id)).first()
        return (row[0], row[1]) if row else None

    def faces_of_job_item(self, tenant_id: str, job_item: str) -> dict[str, tuple[str, str]]:
        """{"<job item>#<n>": (group id, face id)} of the faces a batch job's item placed already."""
        with self.engine.connect() as conn:
            of_item = group_faces.c.job_item.startswith(f"{job_item}#", autoescape=True)
            rows = conn.execute(select(group_faces.c.job_item, group_faces.c.group_id, group_faces.c.id)
                                .where(group_faces.c.tenant_id == tenant_id, of_item)).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    @staticmethod
    def _recount(conn: Connection, group_ids: list[str]) -> None:
        """Counters, first/last seen and the best face, from the members (emptied groups are deleted)."""
        for group_id in group_ids:
            stats = conn.execute(select(func.count(), func.min(group_faces.c.seen_at), func.max(group_faces.c.seen_at))
                                 .where(group_faces.c.group_id == group_id)).one()
            if stats[0] == 0:
                conn.execute(delete(groups).where(groups.c.id == group_id))
                continue
            best = conn.execute(select(group_faces.c.id, group_faces.c.quality)
                                .where(group_faces.c.group_id == group_id)
                                .order_by(group_faces.c.quality.desc(), group_faces.c.seen_at).limit(1)).one()
            conn.execute(update(groups).where(groups.c.id == group_id).values(
                face_count=stats[0], first_seen=stats[1], last_seen=stats[2], best_face=best[0],
                best_quality=best[1]))

    def move_faces(self, tenant_id: str, face_ids: list[str], to_group: str) -> Moved:
        """Move faces into ``to_group``."""
        self.group(tenant_id, to_group)
        with self.engine.begin() as conn:
            version = _bump(conn, tenant_id)
            rows = conn.execute(select(*_FACE_COLUMNS)
                                .where(group_faces.c.tenant_id == tenant_id, group_faces.c.id.in_(face_ids))).all()
            if len(rows) != len(set(face_ids)):
                raise NotFound("no such face", "faces")
            conn.execute(update(group_faces).where(group_faces.c.id.in_(face_ids)).values(group_id=to_group))
            left = sorted({r.group_id for r in rows} - {to_group})
            self._recount(conn, left + [to_group])
        return Moved([_face(r) for r in rows], left, version)

    def merge(self, tenant_id: str, into: str, others: list[str]) -> int:
        """Returns the version of the change."""
        for group_id in [into, *others]:
            self.group(tenant_id, group_id)
        with self.engine.begin() as conn:
            version = _bump(conn, tenant_id)
            conn.execute(update(group_faces).where(group_faces.c.group_id.in_(others)).values(group_id=into))
            conn.execute(delete(groups).where(groups.c.id.in_(others)))
            self._recount(conn, [into])
        return version

    def remove_face(self, tenant_id: str, face_id: str) -> tuple[GroupFace, int]:
        """The face as it was (its group then), and the version of the change."""
        with self.engine.begin() as conn:
            version = _bump(conn, tenant_id)
            row = conn.execute(select(*_FACE_COLUMNS).where(group_faces.c.id == face_id,
                                                            group_faces.c.tenant_id == tenant_id)).first()
            if row is None:
                raise NotFound(f"no grouped face {face_id!r}", "face")
            face = _face(row)
            conn.execute(delete(group_faces).where(group_faces.c.id == face_id))
            self._recount(conn, [face.group_id])
        return face, version

    def delete_group(self, tenant_id: str, group_id: str) -> int:
        """Returns the version of the change."""
        self.group(tenant_id, group_id)
        with self.engine.begin() as conn:
            version = _bump(conn, tenant_id)
            conn.execute(delete(group_faces).where(group_faces.c.group_id == group_id))
            conn.execute(delete(groups).where(groups.c.id == group_id))
        return version

    def set_status(self, tenant_id: str, group_id: str, status: str, subject: dict[str, str] | None = None) -> Group:
        with self.engine.begin() as conn:
            done = conn.execute(update(groups).where(groups.c.id == group_id, groups.c.tenant_id == tenant_id)
                                .values(status=status, subject=json.dumps(subject) if subject else None))
        if done.rowcount == 0:
            raise NotFound(f"no group {group_id!r}", "group")
        return self.group(tenant_id, group_id)

    # -- reads -------------------------------------------------------------------------
    def promoted_to(self, tenant_id: str, gallery: str, subject_id: str) -> list[str]:
        """The groups promoted to subject ``subject_id`` of ``gallery`` (its group history)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(groups.c.id, groups.c.subject).where(
                groups.c.tenant_id == tenant_id, groups.c.status == "promoted")).all()
        wanted = {"gallery": gallery, "subject": subject_id}
        return [r.id for r in rows if r.subject and json.loads(r.subject) == wanted]

    def group(self, tenant_id: str, group_id: str) -> Group:
        with self.engine.connect() as conn:
            row = conn.execute(select(groups).where(groups.c.id == group_id, groups.c.tenant_id == tenant_id)).first()
            if row is None:
                raise NotFound(f"no group {group_id!r}", "group")
            return _group(row, self._cameras(conn, [group_id]).get(group_id, ()))

    def list_groups(self, tenant_id: str, *, camera: str | None, since: float | None, until: float | None,
                    status: str | None, offset: int, limit: int) -> tuple[list[Group], int]:
        query = select(groups).where(groups.c.tenant_id == tenant_id)
        if camera:
            query = query.where(groups.c.id.in_(select(group_faces.c.group_id).where(
                group_faces.c.tenant_id == tenant_id, group_faces.c.camera == camera)))
        if since is not None:
            query = query.where(groups.c.last_seen >= since)
        if until is not None:
            query = query.where(groups.c.first_seen <= until)
        if status:
            query = query.where(groups.c.status == status)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(query.order_by(groups.c.last_seen.desc(), groups.c.id)
                                .offset(offset).limit(limit)).all()
            cameras = self._cameras(conn, [r.id for r in rows])
        return [_group(r, cameras.get(r.id, ())) for r in rows], int(total)

    @staticmethod
    def _cameras(conn: Connection, group_ids: list[str]) -> dict[str, tuple[str, ...]]:
        """The cameras that saw each of ``group_ids``' faces, in one query."""
        if not group_ids:
            return {}
        found: dict[str, list[str]] = {}
        for group_id, camera in conn.execute(
                select(group_faces.c.group_id, group_faces.c.camera).distinct()
                .where(group_faces.c.group_id.in_(group_ids), group_faces.c.camera.is_not(None))):
            found.setdefault(group_id, []).append(camera)
        return {group_id: tuple(sorted(cameras)) for group_id, cameras in found.items()}

    def faces(self, tenant_id: str, group_id: str) -> list[GroupFace]:
        self.group(tenant_id, group_id)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_FACE_COLUMNS).where(group_faces.c.group_id == group_id)
                                .order_by(group_faces.c.quality.desc(), group_faces.c.seen_at)).all()
        return [_face(r) for r in rows]

    def face(self, tenant_id: str, face_id: str) -> GroupFace:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_FACE_COLUMNS).where(group_faces.c.id == face_id,
                                                            group_faces.c.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no grouped face {face_id!r}", "face")
        return _face(row)

    def crop(self, tenant_id: str, face_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(group_faces.c.crop).where(group_faces.c.id == face_id,
                                                                group_faces.c.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no grouped face {face_id!r}", "face")
        crop: bytes | None = row[0]
        return crop

    def count_faces_of_other_models(self, model_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(group_faces)
                                    .where(group_faces.c.model_id != model_id)).scalar_one())

    def faces_of_other_models(self, model_id: str, after: str, limit: int) -> list[tuple[str, GroupFace, bytes | None]]:
        """(tenant, face, crop) of grouped faces not embedded by ``model_id``, ids above ``after``, in id order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(group_faces).where(group_faces.c.model_id != model_id, group_faces.c.id > after)
                                .order_by(group_faces.c.id).limit(limit)).all()
        return [(r.tenant_id, _face(r), r.crop) for r in rows]

    def replace_embeddings(self, vectors: dict[str, np.ndarray],
                           model_id: str) -> tuple[dict[str, tuple[str, str]], dict[str, int]]:
        """New embeddings of ``model_id`` for faces still of another model, in one transaction:
        ({face id: (its tenant, its group now)}, {tenant: the version of the change}). A face deleted
        or re-embedded (by another node) since it was read is left out: the group index adds each
        face's vector once."""
        found: dict[str, tuple[str, str]] = {}
        with self.engine.begin() as conn:
            # Versions first, as every grouping write takes them: the same lock order everywhere. Each
            # tenant's version is announced, even where another node re-embedded all its faces first.
            tenants = conn.execute(select(group_faces.c.tenant_id).distinct()
                                   .where(group_faces.c.id.in_(list(vectors)))).scalars()
            versions = {tenant: _bump(conn, tenant) for tenant in sorted(tenants)}
            for face_id, vector in vectors.items():
                done = conn.execute(update(group_faces).where(group_faces.c.id == face_id,
                                                              group_faces.c.model_id != model_id).values(
                    embedding=np.asarray(vector, np.float32).tobytes(), model_id=model_id))
                if done.rowcount:
                    row = conn.execute(select(group_faces.c.tenant_id, group_faces.c.group_id)
                                       .where(group_faces.c.id == face_id)).one()
                    found[face_id] = (row[0], row[1])
        return found, versions

    def version(self, tenant_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(grouping_versions.c.version)
                                    .where(grouping_versions.c.tenant_id == tenant_id)).scalar() or 0)

    def tenants(self) -> dict[str, int]:
        """{tenant: its grouping version} of every tenant with grouped faces or a version."""
        with self.engine.connect() as conn:
            found = {r[0]: 0 for r in conn.execute(select(group_faces.c.tenant_id).distinct())}
            found.update({r[0]: int(r[1]) for r in conn.execute(select(grouping_versions.c.tenant_id,
                                                                       grouping_versions.c.version))})
        return found

    def read_tenant(self, tenant_id: str, model_id: str, add: Callable[[str, np.ndarray], None],
                    batch: int = 5000) -> int:
        """Hands (group, embedding) of every face of the tenant grouped by ``model_id`` to ``add``
        (another model's embeddings cannot be compared with this one's), and returns the version
        they are at: all read from one snapshot."""
        with read_snapshot(self.engine) as conn:
            version = conn.execute(select(grouping_versions.c.version)
                                   .where(grouping_versions.c.tenant_id == tenant_id)).scalar()
            result = conn.execution_options(stream_results=True).execute(
                select(group_faces.c.group_id, group_faces.c.embedding)
                .where(group_faces.c.tenant_id == tenant_id, group_faces.c.model_id == model_id))
            while rows := result.fetchmany(batch):
                for row in rows:
                    add(row[0], np.frombuffer(row[1], np.float32))
        return int(version or 0)
