"""All SQL of sightings, behind typed methods. Synchronous (callers on the event loop use
``asyncio.to_thread``); every write is one transaction.

Sequence numbers: a tenant's counter row is updated (and so locked, on PostgreSQL) first in every
transaction that adds its sightings, and in the one that opens an erasure. Those transactions are
therefore serialised per tenant and commit in sequence order: a reader that saw sequence n has seen
every sighting numbered below n, which is what makes ``seq > cursor`` a complete catch-up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, delete, func, insert, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from api.errors import NotFound
from repo.store import RepoStore

from .records import NewSighting, Retention, Sighting, SightingFilter, SubjectRef, TrackEnd
from .schema import MIGRATIONS, counters, crops, erasures, retention, sightings

__all__ = ("SightingStore", "Stored", "IndexRow", "Candidate", "Relabel", "ErasedCounts", "AuditRecord")

s = sightings.c
_COLUMNS = [col for col in sightings.c if col.name != "embedding"] + [s.embedding.is_not(None).label("has_embedding")]


@dataclass(slots=True, frozen=True)
class Stored:
    """A sighting just stored, with its embedding (for the search index)."""

    sighting: Sighting
    embedding: np.ndarray | None


@dataclass(slots=True, frozen=True)
class IndexRow:
    """What the search index keeps of a sighting."""

    tenant_id: str
    id: str
    seq: int
    seen_at: float
    camera: str
    embedding: np.ndarray


@dataclass(slots=True, frozen=True)
class Candidate:
    """An unknown sighting that retroactive naming weighs."""

    id: str
    camera: str
    quality: float
    embedding: np.ndarray


@dataclass(slots=True, frozen=True)
class Relabel:
    """An unknown sighting named after the fact, and the decision that named it."""

    sighting_id: str
    subject: SubjectRef
    similarity: float
    runner_up: SubjectRef | None
    runner_up_similarity: float | None
    threshold: float
    margin: float


@dataclass(slots=True, frozen=True)
class ErasedCounts:
    sightings: list[str]  # the ids erased (the index drops them)
    events: list[str]  # their watcher events (grouping drops the faces it placed from them)
    crops: int
    embeddings: int
    mentions: int  # other sightings that named the subject as their runner-up


@dataclass(slots=True, frozen=True)
class AuditRecord:
    id: str
    subject_pk: str
    actor: str
    started_at: float
    finished_at: float | None
    counts: dict[str, int] | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "subject_pk": self.subject_pk, "actor": self.actor, "started_at": self.started_at,
                "finished_at": self.finished_at, "counts": self.counts}


def _sighting(row: Any) -> Sighting:
    return Sighting(row.id, int(row.seq), row.tenant_id, row.event_id, row.camera, row.track, row.first_seen,
                    row.last_seen, row.seen_at, row.stored_at, row.kind, row.subject_pk, row.subject_id,
                    row.subject_name, row.gallery, row.group_id, row.similarity, row.runner_up_id,
                    row.runner_up_gallery, row.runner_up_similarity, row.threshold, row.margin, row.reason,
                    row.quality, row.model_id, bool(row.has_crop), bool(row.has_embedding), row.relabelled_at)


def _filtered(query: Select[Any], tenant_id: str, f: SightingFilter) -> Select[Any]:
    where: list[ColumnElement[bool]] = [s.tenant_id == tenant_id]
    if f.camera is not None:
        where.append(s.camera == f.camera)
    if f.subject_pk is not None:
        where.append(s.subject_pk == f.subject_pk)
    if f.group_id is not None:
        where.append(s.group_id == f.group_id)
    if f.gallery is not None:
        where.append(s.gallery == f.gallery)
    if f.subject_id is not None:
        where.append(s.subject_id == f.subject_id)
    if f.kind is not None:
        where.append(s.kind == f.kind)
    if f.start is not None:
        where.append(s.seen_at >= f.start)
    if f.end is not None:
        where.append(s.seen_at <= f.end)
    return query.where(*where)


_ERASED = {"kind": "erased", "subject_pk": None, "subject_id": None, "subject_name": None, "gallery": None,
           "group_id": None, "similarity": None, "runner_up_pk": None, "runner_up_id": None,
           "runner_up_gallery": None, "runner_up_similarity": None, "threshold": None, "margin": None,
           "reason": None, "model_id": None, "embedding": None, "has_crop": False, "relabelled_at": None}
_NO_RUNNER_UP = {"runner_up_pk": None, "runner_up_id": None, "runner_up_gallery": None}


class SightingStore:
    def __init__(self, store: RepoStore) -> None:
        self.engine = store.engine
        store.migrate_component("sightings", MIGRATIONS)

    # -- writes -------------------------------------------------------------------------
    @staticmethod
    def _allocate(conn: Connection, tenant_id: str, n: int) -> int:
        """Take ``n`` sequence numbers of the tenant (locking its counter until commit); the last one."""
        last = conn.execute(update(counters).where(counters.c.tenant_id == tenant_id)
                            .values(seq=counters.c.seq + n).returning(counters.c.seq)).scalar()
        if last is None:
            conn.execute(insert(counters).values(tenant_id=tenant_id, seq=n))
            return n
        return int(last)

    @staticmethod
    def _erased(conn: Connection, tenant_id: str, pks: set[str]) -> set[str]:
        if not pks:
            return set()
        return set(conn.execute(select(erasures.c.subject_pk).where(
            erasures.c.tenant_id == tenant_id, erasures.c.subject_pk.in_(sorted(pks)))).scalars())

    def write_batch(self, items: Sequence[tuple[str, NewSighting]], ends: Sequence[tuple[str, TrackEnd]] = (),
                    groups: Mapping[str, str] | None = None) -> list[Stored]:
        """Store the sightings not stored yet (by event id), numbered per tenant, and close the time ranges
        of ended tracks, in one transaction. ``groups``: face groups already known for event ids.
        Returns the sightings stored now, in sequence order."""
        groups = groups or {}
        now = time.time()
        stored: list[Stored] = []
        with self.engine.begin() as conn:
            wanted = list(dict.fromkeys(item.event_id for _, item in items))
            seen = set(conn.execute(select(s.event_id).where(s.event_id.in_(wanted))).scalars()) if wanted else set()
            by_tenant: dict[str, list[NewSighting]] = {}
            for tenant_id, item in items:
                if item.event_id not in seen:
                    seen.add(item.event_id)
                    by_tenant.setdefault(tenant_id, []).append(item)
            rows: list[dict[str, Any]] = []
            crop_rows: list[dict[str, Any]] = []
            for tenant_id in sorted(by_tenant):  # one lock order for every writer: no deadlock
                batch = by_tenant[tenant_id]
                first = self._allocate(conn, tenant_id, len(batch)) - len(batch) + 1
                # After the counter: an erasure opened before this batch is seen (see the module doc).
                erased = self._erased(conn, tenant_id, {ref.pk for item in batch for ref in (item.subject,
                                                        item.runner_up) if ref is not None and ref.pk})
                for offset, item in enumerate(batch):
                    row = self._row(tenant_id, first + offset, item, now, groups.get(item.event_id), erased)
                    rows.append(row)
                    if row["has_crop"] and item.crop is not None:
                        crop_rows.append({"sighting_id": row["id"], "tenant_id": tenant_id, "seen_at": item.seen_at,
                                          "crop": item.crop})
                    embedding = None if row["embedding"] is None else item.embedding
                    stored.append(Stored(_sighting_of_row(row), embedding))
            if rows:
                conn.execute(insert(sightings), rows)
            if crop_rows:
                conn.execute(insert(crops), crop_rows)
            for tenant_id, end in ends:
                conn.execute(update(sightings).where(
                    s.tenant_id == tenant_id, s.camera == end.camera, s.track == end.track,
                    s.first_seen == end.first_seen, s.last_seen < end.last_seen).values(last_seen=end.last_seen))
        return stored

    @staticmethod
    def _row(tenant_id: str, seq: int, item: NewSighting, now: float, group_id: str | None,
             erased: set[str]) -> dict[str, Any]:
        subject, runner_up = item.subject, item.runner_up
        row: dict[str, Any] = {
            "id": uuid.uuid4().hex, "tenant_id": tenant_id, "seq": seq, "event_id": item.event_id,
            "camera": item.camera, "track": item.track, "kind": item.kind, "first_seen": item.first_seen,
            "last_seen": item.last_seen, "seen_at": item.seen_at, "stored_at": now,
            "subject_pk": subject.pk if subject else None, "subject_id": subject.id if subject else None,
            "subject_name": subject.name if subject else None, "gallery": subject.gallery if subject else None,
            "group_id": group_id, "similarity": item.similarity,
            "runner_up_pk": runner_up.pk if runner_up else None, "runner_up_id": runner_up.id if runner_up else None,
            "runner_up_gallery": runner_up.gallery if runner_up else None,
            "runner_up_similarity": item.runner_up_similarity, "threshold": item.threshold, "margin": item.margin,
            "reason": item.reason, "quality": item.quality, "model_id": item.model_id,
            "embedding": None if item.embedding is None else np.asarray(item.embedding, np.float32).tobytes(),
            "has_crop": item.crop is not None, "relabelled_at": None,
        }
        if subject is not None and subject.pk in erased:  # a late event of an erased subject: a bare event
            row.update(_ERASED)
        elif runner_up is not None and runner_up.pk in erased:
            row.update(_NO_RUNNER_UP)
        return row

    # -- reads --------------------------------------------------------------------------
    def sighting(self, tenant_id: str, sighting_id: str) -> Sighting:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(s.id == sighting_id, s.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no sighting {sighting_id!r}", "sighting")
        return _sighting(row)

    def crop(self, tenant_id: str, sighting_id: str) -> bytes | None:
        """The sighting's JPEG; None when it has none (not attached, or past retention). NotFound: no sighting."""
        self.sighting(tenant_id, sighting_id)
        with self.engine.connect() as conn:
            data: bytes | None = conn.execute(select(crops.c.crop).where(crops.c.sighting_id == sighting_id,
                                                                         crops.c.tenant_id == tenant_id)).scalar()
        return data

    def embedding(self, tenant_id: str, sighting_id: str) -> tuple[np.ndarray | None, str | None]:
        """(embedding, model id); the embedding is None past retention or after an erasure."""
        with self.engine.connect() as conn:
            row = conn.execute(select(s.embedding, s.model_id).where(s.id == sighting_id,
                                                                     s.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no sighting {sighting_id!r}", "sighting")
        return (None if row[0] is None else np.frombuffer(row[0], np.float32)), row[1]

    def newest(self, tenant_id: str, f: SightingFilter, before: int | None, limit: int) -> list[Sighting]:
        """Newest first, below sequence ``before`` (the previous page's last) when given."""
        query = _filtered(select(*_COLUMNS), tenant_id, f)
        if before is not None:
            query = query.where(s.seq < before)
        with self.engine.connect() as conn:
            return [_sighting(r) for r in conn.execute(query.order_by(s.seq.desc()).limit(limit)).all()]

    def after(self, tenant_id: str, f: SightingFilter, cursor: int, limit: int) -> tuple[list[Sighting], int]:
        """Oldest first after sequence ``cursor``, and the tenant's last sequence number read before them:
        when fewer than ``limit`` come back, every sighting up to that number has been returned."""
        with self.engine.connect() as conn:
            last = conn.execute(select(counters.c.seq).where(counters.c.tenant_id == tenant_id)).scalar() or 0
            rows = conn.execute(_filtered(select(*_COLUMNS), tenant_id, f).where(s.seq > cursor)
                                .order_by(s.seq).limit(limit)).all()
        return [_sighting(r) for r in rows], int(last)

    def seq_of_event(self, tenant_id: str, event_id: str) -> int:
        with self.engine.connect() as conn:
            seq = conn.execute(select(s.seq).where(s.event_id == event_id, s.tenant_id == tenant_id)).scalar()
        if seq is None:
            raise NotFound(f"no sighting of event {event_id!r}", "since")
        return int(seq)

    def last_seq(self, tenant_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(counters.c.seq).where(counters.c.tenant_id == tenant_id)).scalar() or 0)

    def index_rows(self, model_id: str, tenant_id: str | None = None, after: int = 0,
                   batch: int = 5000) -> Iterator[list[IndexRow]]:
        """Sightings with an embedding of ``model_id`` (after sequence ``after`` of ``tenant_id`` when given),
        in batches: what the search index is built and refreshed from."""
        query = select(s.tenant_id, s.id, s.seq, s.seen_at, s.camera, s.embedding).where(
            s.embedding.is_not(None), s.model_id == model_id)
        if tenant_id is not None:
            query = query.where(s.tenant_id == tenant_id, s.seq > after).order_by(s.seq)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            while chunk := result.fetchmany(batch):
                yield [IndexRow(r[0], r[1], int(r[2]), r[3], r[4], np.frombuffer(r[5], np.float32)) for r in chunk]

    def candidates(self, tenant_id: str, ids: Sequence[str], model_id: str) -> list[Candidate]:
        """Of ``ids``, the unknown sightings with an embedding of ``model_id``."""
        out: list[Candidate] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(s.id, s.camera, s.quality, s.embedding).where(
                    s.tenant_id == tenant_id, s.id.in_(list(ids[start:start + 500])), s.kind == "unknown",
                    s.model_id == model_id, s.embedding.is_not(None))).all()
                out += [Candidate(r[0], r[1], r[2], np.frombuffer(r[3], np.float32)) for r in rows]
        return out

    def tenants(self) -> list[str]:
        """Tenants that have had sightings."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(counters.c.tenant_id).order_by(counters.c.tenant_id)).scalars())

    # -- retroactive naming and groups ------------------------------------------------------
    def relabel(self, tenant_id: str, changes: Sequence[Relabel]) -> list[str]:
        """Name unknown sightings (those still unknown); returns the ids named."""
        done = []
        now = time.time()
        with self.engine.begin() as conn:
            self._allocate(conn, tenant_id, 0)  # serialised with erasures: an erased subject names nothing
            erased = self._erased(conn, tenant_id, {ref.pk for c in changes for ref in (c.subject, c.runner_up)
                                                    if ref is not None and ref.pk})
            for c in changes:
                if c.subject.pk in erased:
                    continue
                r = c.runner_up if c.runner_up is None or c.runner_up.pk not in erased else None
                changed = conn.execute(update(sightings).where(
                    s.id == c.sighting_id, s.tenant_id == tenant_id, s.kind == "unknown").values(
                    kind="recognized", subject_pk=c.subject.pk, subject_id=c.subject.id, subject_name=c.subject.name,
                    gallery=c.subject.gallery, similarity=c.similarity, runner_up_pk=r.pk if r else None,
                    runner_up_id=r.id if r else None, runner_up_gallery=r.gallery if r else None,
                    runner_up_similarity=c.runner_up_similarity, threshold=c.threshold, margin=c.margin,
                    reason="matched", relabelled_at=now)).rowcount
                if changed:
                    done.append(c.sighting_id)
        return done

    def place_in_group(self, tenant_id: str, event_id: str, group_id: str) -> bool:
        """The group grouping put a sighting's face in; False when that sighting is not stored (yet)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(sightings).where(s.event_id == event_id, s.tenant_id == tenant_id)
                                     .values(group_id=group_id)).rowcount)

    def merge_groups(self, tenant_id: str, into: str, others: Sequence[str]) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(update(sightings).where(s.tenant_id == tenant_id, s.group_id.in_(list(others)))
                                    .values(group_id=into)).rowcount)

    def clear_group(self, tenant_id: str, group_id: str) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(update(sightings).where(s.tenant_id == tenant_id, s.group_id == group_id)
                                    .values(group_id=None)).rowcount)

    # -- retention ----------------------------------------------------------------------
    def retention(self, tenant_id: str) -> Retention | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(retention).where(retention.c.tenant_id == tenant_id)).first()
        return None if row is None else Retention(row.recognized_s, row.unknown_s, row.crop_s, row.embedding_s)

    def set_retention(self, tenant_id: str, value: Retention) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(retention).where(retention.c.tenant_id == tenant_id))
            conn.execute(insert(retention).values(tenant_id=tenant_id, updated_at=time.time(), **value.as_json()))

    def expire(self, tenant_id: str, kinds: Sequence[str], cutoff: float, limit: int) -> list[str]:
        """Delete up to ``limit`` sightings of ``kinds`` seen before ``cutoff``; returns their ids."""
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(s.id).where(s.tenant_id == tenant_id, s.kind.in_(list(kinds)),
                                                       s.seen_at < cutoff).limit(limit)).scalars())
            if ids:
                conn.execute(delete(crops).where(crops.c.sighting_id.in_(ids)))
                conn.execute(delete(sightings).where(s.id.in_(ids)))
        return ids

    def drop_crops(self, tenant_id: str, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` crops of sightings seen before ``cutoff`` (the sightings stay)."""
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(crops.c.sighting_id).where(
                crops.c.tenant_id == tenant_id, crops.c.seen_at < cutoff).limit(limit)).scalars())
            if ids:
                conn.execute(delete(crops).where(crops.c.sighting_id.in_(ids)))
                conn.execute(update(sightings).where(s.id.in_(ids)).values(has_crop=False))
        return len(ids)

    def drop_embeddings(self, tenant_id: str, cutoff: float, limit: int) -> list[str]:
        """Forget up to ``limit`` embeddings of sightings seen before ``cutoff``; returns their ids."""
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(s.id).where(s.tenant_id == tenant_id, s.seen_at < cutoff,
                                                       s.embedding.is_not(None)).limit(limit)).scalars())
            if ids:
                conn.execute(update(sightings).where(s.id.in_(ids)).values(embedding=None))
        return ids

    # -- erasure ------------------------------------------------------------------------
    def open_erasure(self, tenant_id: str, subject_pk: str, actor: str) -> str:
        """The audit row, written first: from its commit on, a sighting of the subject is stored erased."""
        audit_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            self._allocate(conn, tenant_id, 0)  # the counter's lock: serialised with the writers (module doc)
            conn.execute(insert(erasures).values(id=audit_id, tenant_id=tenant_id, subject_pk=subject_pk,
                                                 actor=actor[:300], started_at=time.time()))
        return audit_id

    def erase(self, tenant_id: str, subject_pk: str, group_ids: Sequence[str]) -> ErasedCounts:
        """The subject's sightings (those naming it, and those of its face groups) become bare events:
        no crop, embedding, name or group; other sightings stop naming it as their runner-up."""
        with self.engine.begin() as conn:
            whose = (s.subject_pk == subject_pk) | s.group_id.in_(list(group_ids)) if group_ids else \
                s.subject_pk == subject_pk
            rows = conn.execute(select(s.id, s.event_id).where(s.tenant_id == tenant_id, whose)).all()
            ids = [r[0] for r in rows]
            crops_gone = embeddings_gone = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                crops_gone += conn.execute(delete(crops).where(crops.c.sighting_id.in_(chunk))).rowcount
                embeddings_gone += conn.execute(select(func.count()).select_from(sightings).where(
                    s.id.in_(chunk), s.embedding.is_not(None))).scalar_one()
                conn.execute(update(sightings).where(s.id.in_(chunk)).values(**_ERASED))
            mentions = conn.execute(update(sightings).where(s.tenant_id == tenant_id, s.runner_up_pk == subject_pk)
                                    .values(**_NO_RUNNER_UP)).rowcount
        return ErasedCounts(ids, [r[1] for r in rows], crops_gone, int(embeddings_gone), mentions)

    def close_erasure(self, audit_id: str, counts: dict[str, int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(erasures).where(erasures.c.id == audit_id).values(
                finished_at=time.time(), counts=json.dumps(counts, sort_keys=True)))

    def erasure_log(self, tenant_id: str, limit: int) -> list[AuditRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(erasures).where(erasures.c.tenant_id == tenant_id)
                                .order_by(erasures.c.started_at.desc()).limit(limit)).all()
        return [AuditRecord(r.id, r.subject_pk, r.actor, r.started_at, r.finished_at,
                            json.loads(r.counts) if r.counts else None) for r in rows]

    def compact(self) -> None:
        """SQLite: fold the write-ahead log into the database file and truncate it, so that what an erasure
        overwrote (secure_delete) is not still in the log. Nothing to do on PostgreSQL (VACUUM reclaims)."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def _sighting_of_row(row: dict[str, Any]) -> Sighting:
    return Sighting(row["id"], row["seq"], row["tenant_id"], row["event_id"], row["camera"], row["track"],
                    row["first_seen"], row["last_seen"], row["seen_at"], row["stored_at"], row["kind"],
                    row["subject_pk"], row["subject_id"], row["subject_name"], row["gallery"], row["group_id"],
                    row["similarity"], row["runner_up_id"], row["runner_up_gallery"], row["runner_up_similarity"],
                    row["threshold"], row["margin"], row["reason"], row["quality"], row["model_id"], row["has_crop"],
                    row["embedding"] is not None, None)
