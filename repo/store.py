"""All SQL of the repo, behind typed methods. Synchronous: callers on the
event loop use ``asyncio.to_thread``. Every write is one transaction."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection, Engine, Table, create_engine, make_url, delete, event, func, insert, select, text, update,
)
from sqlalchemy.exc import IntegrityError

from api.errors import Conflict, NotFound

from . import schema as s

__all__ = ("NegativeRecord", "Gallery", "Subject", "FaceRecord", "ApiKeyRecord", "SubjectUpdate", "StoredAnswer",
           "UnheldJob", "JobLease", "RepoStore", "open_store", "read_snapshot")


@dataclass(slots=True, frozen=True)
class Gallery:
    id: str
    tenant_id: str
    name: str
    created_at: float
    version: int = 0  # its change sequence when read (repo/sync.py)


@dataclass(slots=True, frozen=True)
class Subject:
    pk: str
    gallery_id: str
    id: str
    name: str
    meta: dict[str, Any]
    created_at: float
    face_count: int = 0


@dataclass(slots=True, frozen=True)
class NegativeRecord:
    """A face said not to be the subject ``subject_pk`` (feedback)."""

    id: str
    subject_pk: str
    gallery_id: str
    embedding: np.ndarray
    model_id: str
    source: str
    created_at: float


@dataclass(slots=True, frozen=True)
class FaceRecord:
    id: str
    subject_pk: str
    gallery_id: str
    box: list[float]
    landmarks: list[list[float]]
    det_score: float
    quality: float
    embedding: np.ndarray
    model_id: str
    photo_hash: str
    image_key: str | None
    created_at: float


@dataclass(slots=True, frozen=True)
class ApiKeyRecord:
    id: str  # the public part of the key
    tenant_id: str
    secret_hash: str
    name: str
    scope: str | None  # api.scopes.KeyScope as JSON; None: full
    revoked: bool
    created_at: float


_KEY_COLUMNS = (s.api_keys.c.id, s.api_keys.c.tenant_id, s.api_keys.c.secret_hash, s.api_keys.c.name,
                s.api_keys.c.scope, s.api_keys.c.revoked, s.api_keys.c.created_at)


def _key_record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), float(row[6]))


@dataclass(slots=True, frozen=True)
class SubjectUpdate:
    """What ``update_subject`` did: the subject now, and for a merge the subject merged away,
    the faces that moved, and the gallery version of the change."""

    subject: Subject
    merged_pk: str | None = None
    moved_faces: tuple[str, ...] = ()
    version: int | None = None


@dataclass(slots=True, frozen=True)
class UnheldJob:
    """An unfinished job whose lease nobody holds (its runner died, stopped, or is us, restarted)."""

    tenant_id: str
    job_id: str
    runner: str | None  # who held it last
    epoch: int
    has_input: bool  # its input is in the database (else: in its runner's spool, a job from before leases)


@dataclass(slots=True, frozen=True)
class JobLease:
    """The lease a runner holds on a job: its writes name it, and are refused once another holds the job."""

    runner: str
    epoch: int


_UNFINISHED = ("queued", "running")


@dataclass(slots=True, frozen=True)
class StoredAnswer:
    """An idempotency key's row: its request's fingerprint and, once done, the answer."""

    fingerprint: str
    state: str  # running | done
    owner: str
    started_at: float
    status: int | None
    content_type: str | None
    headers: dict[str, str]
    body: bytes | None


def _now() -> float:
    return time.time()


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see the same committed state, whatever commits meanwhile:
    what a reload reads must be exactly the state at the version it reads with it."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            yield conn
        return
    # SQLite (WAL): one explicit read transaction; the driver's own transaction handling would
    # start none for plain SELECTs, and each statement would then see its own state.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.exec_driver_sql("COMMIT")


def _bump(conn: Connection, gallery_id: str, n: int = 1) -> int:
    """Take the gallery's next ``n`` versions in the caller's transaction; returns the last.

    The row lock the update takes holds every other writer of the gallery
    until this transaction ends, so versions commit in the order they are taken.
    """
    done = conn.execute(update(s.galleries).where(s.galleries.c.id == gallery_id)
                        .values(version=s.galleries.c.version + n))
    if done.rowcount == 0:
        raise NotFound("gallery not found", "gallery")
    return int(conn.execute(select(s.galleries.c.version).where(s.galleries.c.id == gallery_id)).scalar_one())


def open_store(url: str) -> "RepoStore":
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
            cur.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros, not left in free pages: an erased face is gone
            # from the file too (sightings/erasure.py), not only from the tables.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()
    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    store = RepoStore(engine)
    store.migrate()
    return store


class RepoStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _write_unique(self, statement: Any, conflict: Conflict) -> None:
        """One statement in its own transaction; a uniqueness violation is ``conflict``."""
        try:
            with self.engine.begin() as conn:
                conn.execute(statement)
        except IntegrityError:
            raise conflict from None

    def migrate(self) -> int:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several API instances may start at once: one migrates.
                conn.execute(text("SELECT pg_advisory_xact_lock(7142001)"))
            return s.migrate(conn)

    def migrate_component(self, component: str, steps: list[s.Migration]) -> int:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7142001)"))
            return s.migrate_component(conn, component, steps)

    def close(self) -> None:
        self.engine.dispose()

    # -- settings, tenants, credentials --------------------------------------
    def setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(s.settings.c.value).where(s.settings.c.key == key)).scalar()

    def create_tenant(self, name: str) -> str:
        tenant_id = uuid.uuid4().hex
        self._write_unique(insert(s.tenants).values(id=tenant_id, name=name, created_at=_now()),
                           Conflict(f"tenant {name!r} exists"))
        return tenant_id

    def tenant_by_name(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(s.tenants.c.id).where(s.tenants.c.name == name)).scalar()

    def create_client(self, tenant_id: str, client_id: str, secret_hash: str) -> None:
        self._write_unique(insert(s.clients).values(id=client_id, tenant_id=tenant_id, secret_hash=secret_hash,
                                                    created_at=_now()), Conflict(f"client {client_id!r} exists"))

    def client(self, client_id: str) -> tuple[str, str] | None:
        """(tenant id, secret hash)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(s.clients.c.tenant_id, s.clients.c.secret_hash)
                               .where(s.clients.c.id == client_id)).first()
        return (row[0], row[1]) if row else None

    def create_api_key(self, tenant_id: str, key_id: str, key_hash: str, name: str, scope: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.api_keys).values(id=key_id, tenant_id=tenant_id, secret_hash=key_hash, name=name,
                                                   revoked=False, created_at=_now(), scope=scope))

    def api_key(self, key_id: str) -> ApiKeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_KEY_COLUMNS).where(s.api_keys.c.id == key_id)).first()
        return _key_record(row) if row else None

    def api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """The tenant's keys, revoked ones included (they say so), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_KEY_COLUMNS).where(s.api_keys.c.tenant_id == tenant_id)
                                .order_by(s.api_keys.c.created_at, s.api_keys.c.id)).all()
        return [_key_record(r) for r in rows]

    def revoke_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord:
        with self.engine.begin() as conn:
            done = conn.execute(update(s.api_keys).where(s.api_keys.c.id == key_id,
                                                         s.api_keys.c.tenant_id == tenant_id).values(revoked=True))
        record = self.api_key(key_id)
        if done.rowcount == 0 or record is None:
            raise NotFound(f"no API key {key_id!r}")
        return record

    def live_api_keys(self, key_ids: Collection[str]) -> set[str]:
        """Which of ``key_ids`` exist and are not revoked."""
        if not key_ids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(select(s.api_keys.c.id).where(s.api_keys.c.id.in_(list(key_ids)),
                                                                  s.api_keys.c.revoked.is_(False))).scalars())

    def store_refresh_token(self, token_id: str, token_hash: str, client_id: str, tenant_id: str,
                            expires_at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.refresh_tokens).values(id=token_id, secret_hash=token_hash, client_id=client_id,
                                                         tenant_id=tenant_id, expires_at=expires_at, revoked=False))

    def take_refresh_token(self, token_id: str) -> tuple[str, str, str, float] | None:
        """Revoke and return (hash, client id, tenant id, expires_at): each refresh token works once."""
        with self.engine.begin() as conn:
            row = conn.execute(select(s.refresh_tokens.c.secret_hash, s.refresh_tokens.c.client_id,
                                      s.refresh_tokens.c.tenant_id, s.refresh_tokens.c.expires_at)
                               .where(s.refresh_tokens.c.id == token_id, s.refresh_tokens.c.revoked.is_(False))
                               .with_for_update()).first()
            if row is None:
                return None
            conn.execute(update(s.refresh_tokens).where(s.refresh_tokens.c.id == token_id).values(revoked=True))
        return row[0], row[1], row[2], row[3]

    # -- jobs -------------------------------------------------------------------
    def create_job(self, tenant_id: str, kind: str, total: int, params: dict[str, Any], runner: str | None = None,
                   *, data: bytes | None = None, lease_ttl_s: float | None = None) -> str:
        """A job, with its input (``data``, kept until the job ends) and, with ``lease_ttl_s``, its
        runner's first lease (epoch 1), all in one transaction: accepted means resumable by any node."""
        job_id = uuid.uuid4().hex
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(insert(s.jobs).values(
                id=job_id, tenant_id=tenant_id, kind=kind, status="queued", done=0, total=total,
                result=json.dumps({"params": params}), created_at=now, updated_at=now, runner=runner,
                lease_epoch=1 if lease_ttl_s is not None else 0,
                lease_expires_at=now + lease_ttl_s if lease_ttl_s is not None else None))
            if data is not None:
                conn.execute(insert(s.job_inputs).values(job_id=job_id, data=data))
        return job_id

    def job_input(self, job_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            data = conn.execute(select(s.job_inputs.c.data).where(s.job_inputs.c.job_id == job_id)).scalar()
        return None if data is None else bytes(data)

    def update_job(self, job_id: str, status: str, done: int, result: dict[str, Any],
                   lease: JobLease | None = None) -> bool:
        """Progress or the end of a job; False if it was cancelled meanwhile, or (``lease``) another runner
        holds it now: then nothing is written. A job that ends drops its input."""
        where = [s.jobs.c.id == job_id, s.jobs.c.status != "cancelled"]
        if lease is not None:
            where += [s.jobs.c.runner == lease.runner, s.jobs.c.lease_epoch == lease.epoch]
        with self.engine.begin() as conn:
            changed = conn.execute(update(s.jobs).where(*where).values(
                status=status, done=done, result=json.dumps(result), updated_at=_now())).rowcount
            if changed and status not in _UNFINISHED:
                conn.execute(delete(s.job_inputs).where(s.job_inputs.c.job_id == job_id))
        return bool(changed)

    def cancel_job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """Mark an unfinished job cancelled (its runner stops after the items in hand)."""
        with self.engine.begin() as conn:
            changed = conn.execute(update(s.jobs).where(
                s.jobs.c.id == job_id, s.jobs.c.tenant_id == tenant_id, s.jobs.c.status.in_(_UNFINISHED))
                .values(status="cancelled", updated_at=_now())).rowcount
            if changed:
                conn.execute(delete(s.job_inputs).where(s.job_inputs.c.job_id == job_id))
        job = self.job(tenant_id, job_id)  # 404 for another tenant's or an unknown job
        if not changed:
            raise Conflict(f"job {job_id!r} is {job['status']}, not running", "job")
        return job

    def job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.jobs).where(s.jobs.c.id == job_id, s.jobs.c.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found", "job")
        return {"id": row.id, "tenant_id": row.tenant_id, "kind": row.kind, "status": row.status, "done": row.done,
                "total": row.total, "result": json.loads(row.result), "created_at": row.created_at,
                "updated_at": row.updated_at}

    def unheld_jobs(self, runner: str, now: float, *, restarted: bool = False) -> list[UnheldJob]:
        """Unfinished jobs ``runner`` may claim: those of no runner, and those whose lease expired (their
        runner died) or was released (it stopped); ``restarted``: its own as well (it ran them before)."""
        has_input = s.job_inputs.c.job_id.is_not(None)
        free = s.jobs.c.runner.is_(None) | s.jobs.c.lease_expires_at.is_(None) | (s.jobs.c.lease_expires_at <= now)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.jobs.c.tenant_id, s.jobs.c.id, s.jobs.c.runner, s.jobs.c.lease_epoch, has_input)
                .select_from(s.jobs.outerjoin(s.job_inputs, s.job_inputs.c.job_id == s.jobs.c.id))
                .where(s.jobs.c.status.in_(_UNFINISHED), (s.jobs.c.runner == runner) | free if restarted else free)
                .order_by(s.jobs.c.created_at)).all()
        return [UnheldJob(r[0], r[1], r[2], int(r[3]), bool(r[4])) for r in rows]

    def claim_job(self, job: UnheldJob, runner: str, ttl_s: float, now: float) -> JobLease | None:
        """Take ``job``'s lease for ``runner`` (the next epoch), unless another runner took it since it was read."""
        with self.engine.begin() as conn:
            done = conn.execute(update(s.jobs).where(
                s.jobs.c.id == job.job_id, s.jobs.c.lease_epoch == job.epoch, s.jobs.c.status.in_(_UNFINISHED),
            ).values(runner=runner, lease_epoch=job.epoch + 1, lease_expires_at=now + ttl_s)).rowcount
        return JobLease(runner, job.epoch + 1) if done == 1 else None

    def renew_jobs(self, leases: dict[str, JobLease], ttl_s: float, now: float) -> set[str]:
        """Extend these leases; returns the jobs still held (a missing one ended, was cancelled, or taken)."""
        renewed = set()
        with self.engine.begin() as conn:
            for job_id, lease in leases.items():
                if conn.execute(update(s.jobs).where(
                        s.jobs.c.id == job_id, s.jobs.c.runner == lease.runner, s.jobs.c.lease_epoch == lease.epoch,
                        s.jobs.c.status.in_(_UNFINISHED)).values(lease_expires_at=now + ttl_s)).rowcount == 1:
                    renewed.add(job_id)
        return renewed

    def release_jobs(self, leases: dict[str, JobLease]) -> None:
        """Give these leases up (the runner stops cleanly): any runner may claim the jobs at once."""
        with self.engine.begin() as conn:
            for job_id, lease in leases.items():
                conn.execute(update(s.jobs).where(
                    s.jobs.c.id == job_id, s.jobs.c.runner == lease.runner, s.jobs.c.lease_epoch == lease.epoch,
                ).values(lease_expires_at=0.0))

    # -- galleries -------------------------------------------------------------
    @staticmethod
    def _gallery(row: Any) -> Gallery:
        return Gallery(row.id, row.tenant_id, row.name, row.created_at, int(row.version))

    def list_galleries(self, tenant_id: str) -> list[tuple[Gallery, int, int]]:
        """Each gallery with its subject and face counts."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.galleries).where(s.galleries.c.tenant_id == tenant_id)
                                .order_by(s.galleries.c.name)).all()
            ids = [r.id for r in rows]
            subj: dict[str, int] = dict(conn.execute(select(s.subjects.c.gallery_id, func.count())
                                                     .where(s.subjects.c.gallery_id.in_(ids))
                                                     .group_by(s.subjects.c.gallery_id)).all())
            fc: dict[str, int] = dict(conn.execute(select(s.faces.c.gallery_id, func.count())
                                                   .where(s.faces.c.gallery_id.in_(ids))
                                                   .group_by(s.faces.c.gallery_id)).all())
        return [(self._gallery(r), int(subj.get(r.id, 0)), int(fc.get(r.id, 0))) for r in rows]

    def create_gallery(self, tenant_id: str, name: str) -> Gallery:
        gallery = Gallery(uuid.uuid4().hex, tenant_id, name, _now())
        self._write_unique(insert(s.galleries).values(id=gallery.id, tenant_id=tenant_id, name=name,
                                                      created_at=gallery.created_at),
                           Conflict(f"gallery {name!r} exists", "name"))
        return gallery

    def gallery(self, tenant_id: str, name: str) -> Gallery:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.galleries).where(s.galleries.c.tenant_id == tenant_id,
                                                         s.galleries.c.name == name)).first()
        if row is None:
            raise NotFound(f"gallery {name!r} not found", "gallery")
        return self._gallery(row)

    def all_galleries(self, tenant_id: str | None = None) -> list[Gallery]:
        """Every gallery (of one tenant), with its version."""
        query = select(s.galleries) if tenant_id is None else select(s.galleries).where(
            s.galleries.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return [self._gallery(r) for r in conn.execute(query).all()]

    def gallery_by_id(self, gallery_id: str) -> Gallery | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.galleries).where(s.galleries.c.id == gallery_id)).first()
        return None if row is None else self._gallery(row)

    def rename_gallery(self, gallery: Gallery, new_name: str) -> Gallery:
        """The gallery renamed, with the version of the change (followers keep names too)."""
        try:
            with self.engine.begin() as conn:
                version = _bump(conn, gallery.id)
                conn.execute(update(s.galleries).where(s.galleries.c.id == gallery.id).values(name=new_name))
        except IntegrityError:
            raise Conflict(f"gallery {new_name!r} exists", "name") from None
        return Gallery(gallery.id, gallery.tenant_id, new_name, gallery.created_at, version)

    def delete_gallery(self, gallery: Gallery) -> tuple[list[str | None], int]:
        """Deletes the gallery with its subjects and faces; returns their image keys and the
        version of the deletion (the gallery's last)."""
        with self.engine.begin() as conn:
            version = _bump(conn, gallery.id)
            keys = list(conn.execute(select(s.faces.c.image_key).where(s.faces.c.gallery_id == gallery.id)).scalars())
            conn.execute(delete(s.faces).where(s.faces.c.gallery_id == gallery.id))
            conn.execute(delete(s.negatives).where(s.negatives.c.gallery_id == gallery.id))
            conn.execute(delete(s.subjects).where(s.subjects.c.gallery_id == gallery.id))
            conn.execute(delete(s.galleries).where(s.galleries.c.id == gallery.id))
        return keys, version

    def read_gallery(self, gallery_id: str, model_id: str,
                     add: Callable[[list[str], list[str], np.ndarray], None],
                     batch: int = 5000) -> tuple[Gallery, list[NegativeRecord]] | None:
        """The gallery (its version included), its faces of ``model_id`` (handed to ``add`` in
        batches of face ids, subject pks, embeddings) and its negatives, all from one snapshot;
        None if the gallery does not exist."""
        with read_snapshot(self.engine) as conn:
            row = conn.execute(select(s.galleries).where(s.galleries.c.id == gallery_id)).first()
            if row is None:
                return None
            result = conn.execution_options(stream_results=True).execute(
                select(s.faces.c.id, s.faces.c.subject_pk, s.faces.c.embedding)
                .where(s.faces.c.gallery_id == gallery_id, s.faces.c.model_id == model_id))
            while rows := result.fetchmany(batch):
                add([r[0] for r in rows], [r[1] for r in rows], np.stack([np.frombuffer(r[2], np.float32)
                                                                          for r in rows]))
            negatives = conn.execute(select(s.negatives).where(s.negatives.c.gallery_id == gallery_id,
                                                               s.negatives.c.model_id == model_id)).all()
        return self._gallery(row), [self._negative(r) for r in negatives]

    # -- subjects --------------------------------------------------------------
    @staticmethod
    def _subject(row: Any, face_count: int = 0) -> Subject:
        return Subject(row.pk, row.gallery_id, row.id, row.name, json.loads(row.meta or "{}"), row.created_at,
                       face_count)

    def list_subjects(self, gallery_id: str, offset: int, limit: int) -> tuple[list[Subject], int]:
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(s.subjects)
                                 .where(s.subjects.c.gallery_id == gallery_id)).scalar_one()
            counts = (select(s.faces.c.subject_pk, func.count().label("n")).where(s.faces.c.gallery_id == gallery_id)
                      .group_by(s.faces.c.subject_pk).subquery())
            rows = conn.execute(select(s.subjects, counts.c.n).outerjoin(counts, counts.c.subject_pk == s.subjects.c.pk)
                                .where(s.subjects.c.gallery_id == gallery_id).order_by(s.subjects.c.name)
                                .offset(offset).limit(limit)).all()
        return [self._subject(r, int(r.n or 0)) for r in rows], int(total)

    def create_subject(self, gallery_id: str, subject_id: str, name: str, meta: dict[str, Any]) -> Subject:
        subject = Subject(uuid.uuid4().hex, gallery_id, subject_id, name, meta, _now())
        self._write_unique(insert(s.subjects).values(pk=subject.pk, gallery_id=gallery_id, id=subject_id, name=name,
                                                     meta=json.dumps(meta), created_at=subject.created_at),
                           Conflict(f"subject id {subject_id!r} or name {name!r} exists in this gallery", "id"))
        return subject

    def subject(self, gallery_id: str, subject_id: str) -> Subject:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.subjects).where(s.subjects.c.gallery_id == gallery_id,
                                                        s.subjects.c.id == subject_id)).first()
            if row is None:
                raise NotFound(f"subject {subject_id!r} not found", "subject")
            n = conn.execute(select(func.count()).select_from(s.faces)
                             .where(s.faces.c.subject_pk == row.pk)).scalar_one()
        return self._subject(row, int(n))

    def subjects_by_pk(self, pks: list[str]) -> dict[str, Subject]:
        if not pks:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.subjects).where(s.subjects.c.pk.in_(pks))).all()
        return {r.pk: self._subject(r) for r in rows}

    def update_subject(self, subject: Subject, name: str | None, meta: dict[str, Any] | None) -> SubjectUpdate:
        """Rename and/or set meta. Renaming onto another subject's name merges
        this one into it (a change of the gallery's index: it takes a version)."""
        with self.engine.begin() as conn:
            if name is not None and name != subject.name:
                target = conn.execute(select(s.subjects).where(s.subjects.c.gallery_id == subject.gallery_id,
                                                               s.subjects.c.name == name)).first()
                if target is not None:
                    version = _bump(conn, subject.gallery_id)
                    moved = tuple(conn.execute(select(s.faces.c.id)
                                               .where(s.faces.c.subject_pk == subject.pk)).scalars())
                    conn.execute(update(s.faces).where(s.faces.c.subject_pk == subject.pk).values(subject_pk=target.pk))
                    conn.execute(update(s.negatives).where(s.negatives.c.subject_pk == subject.pk)
                                 .values(subject_pk=target.pk))
                    if meta is not None:
                        conn.execute(update(s.subjects).where(s.subjects.c.pk == target.pk)
                                     .values(meta=json.dumps(meta)))
                    conn.execute(delete(s.subjects).where(s.subjects.c.pk == subject.pk))
                    return SubjectUpdate(self._subject_in(conn, target.pk), subject.pk, moved, version)
                conn.execute(update(s.subjects).where(s.subjects.c.pk == subject.pk).values(name=name))
            if meta is not None:
                conn.execute(update(s.subjects).where(s.subjects.c.pk == subject.pk).values(meta=json.dumps(meta)))
            return SubjectUpdate(self._subject_in(conn, subject.pk))

    def _subject_in(self, conn: Any, pk: str) -> Subject:
        row = conn.execute(select(s.subjects).where(s.subjects.c.pk == pk)).one()
        n = conn.execute(select(func.count()).select_from(s.faces).where(s.faces.c.subject_pk == pk)).scalar_one()
        return self._subject(row, int(n))

    def delete_subject(self, subject: Subject) -> tuple[list[tuple[str, str | None]], int]:
        """Deletes the subject and its faces; returns (face id, image key) of each, and the version."""
        with self.engine.begin() as conn:
            version = _bump(conn, subject.gallery_id)
            gone = [(r.id, r.image_key) for r in conn.execute(select(s.faces.c.id, s.faces.c.image_key)
                                                              .where(s.faces.c.subject_pk == subject.pk)).all()]
            conn.execute(delete(s.faces).where(s.faces.c.subject_pk == subject.pk))
            conn.execute(delete(s.subjects).where(s.subjects.c.pk == subject.pk))
        return gone, version

    # -- faces -----------------------------------------------------------------
    @staticmethod
    def _face(row: Any) -> FaceRecord:
        return FaceRecord(row.id, row.subject_pk, row.gallery_id, json.loads(row.box), json.loads(row.landmarks),
                          row.det_score, row.quality, np.frombuffer(row.embedding, np.float32), row.model_id,
                          row.photo_hash, row.image_key, row.created_at)

    def add_faces(self, records: list[FaceRecord], thumbnails: list[bytes | None],
                  job_item: str | None = None) -> list[int]:
        """Stores the faces in one transaction; returns each one's gallery version."""
        with self.engine.begin() as conn:
            versions: dict[str, int] = {}
            for gallery_id in dict.fromkeys(r.gallery_id for r in records):
                mine = [r.id for r in records if r.gallery_id == gallery_id]
                last = _bump(conn, gallery_id, len(mine))
                versions.update(zip(mine, range(last - len(mine) + 1, last + 1)))
            for record, thumb in zip(records, thumbnails):
                conn.execute(insert(s.faces).values(
                    id=record.id, subject_pk=record.subject_pk, gallery_id=record.gallery_id,
                    box=json.dumps(record.box), landmarks=json.dumps(record.landmarks), det_score=record.det_score,
                    quality=record.quality, embedding=record.embedding.astype(np.float32).tobytes(),
                    model_id=record.model_id, photo_hash=record.photo_hash, image_key=record.image_key,
                    thumbnail=thumb, created_at=record.created_at, job_item=job_item))
        return [versions[r.id] for r in records]

    def faces_of_job_item(self, job_item: str) -> int:
        """How many faces a bulk job's item added (the item was done if any)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.faces)
                                    .where(s.faces.c.job_item == job_item)).scalar_one())

    def subject_has_photo(self, subject_pk: str, photo_hash: str) -> bool:
        """Is a face from this photo (its bytes' hash) enrolled for the subject already?"""
        with self.engine.connect() as conn:
            found = conn.execute(select(s.faces.c.id).where(s.faces.c.subject_pk == subject_pk,
                                                            s.faces.c.photo_hash == photo_hash).limit(1)).first()
        return found is not None

    def faces_of_subject(self, subject_pk: str) -> list[FaceRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.faces).where(s.faces.c.subject_pk == subject_pk)
                                .order_by(s.faces.c.created_at)).all()
        return [self._face(r) for r in rows]

    def _tenant_row(self, table: Table, row_id: str, tenant_id: str, what: str) -> tuple[Any, Gallery]:
        """A row of a per-gallery table and its gallery, only if the gallery is ``tenant_id``'s."""
        with self.engine.connect() as conn:
            row = conn.execute(select(table).join(s.galleries, s.galleries.c.id == table.c.gallery_id)
                               .where(table.c.id == row_id, s.galleries.c.tenant_id == tenant_id)).first()
            if row is None:
                raise NotFound(f"{what} {row_id!r} not found", f"{what}_id")
            gallery = conn.execute(select(s.galleries).where(s.galleries.c.id == row.gallery_id)).one()
        return row, self._gallery(gallery)

    def face(self, tenant_id: str, face_id: str) -> tuple[FaceRecord, Gallery]:
        row, gallery = self._tenant_row(s.faces, face_id, tenant_id, "face")
        return self._face(row), gallery

    def face_thumbnail(self, face_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(select(s.faces.c.thumbnail).where(s.faces.c.id == face_id)).scalar()

    def delete_face(self, face_id: str) -> int | None:
        """The gallery version of the deletion; None if the face was gone already."""
        with self.engine.begin() as conn:
            gallery_id = conn.execute(select(s.faces.c.gallery_id).where(s.faces.c.id == face_id)).scalar()
            if gallery_id is None:
                return None
            version = _bump(conn, gallery_id)
            conn.execute(delete(s.faces).where(s.faces.c.id == face_id))
        return version

    def image_key_in_use(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(s.faces)
                                .where(s.faces.c.image_key == key)).scalar_one() > 0

    # -- negatives (feedback: "this is not X") ------------------------------------------
    @staticmethod
    def _negative(row: Any) -> NegativeRecord:
        return NegativeRecord(row.id, row.subject_pk, row.gallery_id, np.frombuffer(row.embedding, np.float32),
                              row.model_id, row.source, row.created_at)

    def add_negative(self, record: NegativeRecord, thumbnail: bytes | None) -> int:
        """Returns the gallery version of the change."""
        with self.engine.begin() as conn:
            version = _bump(conn, record.gallery_id)
            conn.execute(insert(s.negatives).values(
                id=record.id, subject_pk=record.subject_pk, gallery_id=record.gallery_id,
                embedding=record.embedding.astype(np.float32).tobytes(), model_id=record.model_id,
                source=record.source, thumbnail=thumbnail, created_at=record.created_at))
        return version

    def negatives_of_subject(self, subject_pk: str) -> list[NegativeRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.negatives).where(s.negatives.c.subject_pk == subject_pk)
                                .order_by(s.negatives.c.created_at)).all()
        return [self._negative(r) for r in rows]

    def negative(self, tenant_id: str, negative_id: str) -> tuple[NegativeRecord, Gallery]:
        row, gallery = self._tenant_row(s.negatives, negative_id, tenant_id, "negative")
        return self._negative(row), gallery

    def delete_negative(self, negative_id: str) -> int | None:
        """The gallery version of the deletion; None if the negative was gone already."""
        with self.engine.begin() as conn:
            gallery_id = conn.execute(select(s.negatives.c.gallery_id).where(s.negatives.c.id == negative_id)).scalar()
            if gallery_id is None:
                return None
            version = _bump(conn, gallery_id)
            conn.execute(delete(s.negatives).where(s.negatives.c.id == negative_id))
        return version

    def gallery_negatives(self, gallery_id: str, model_id: str) -> list[NegativeRecord]:
        """Every negative of ``model_id`` in the gallery (few: one per correction)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.negatives).where(s.negatives.c.gallery_id == gallery_id,
                                                          s.negatives.c.model_id == model_id)).all()
        return [self._negative(r) for r in rows]

    def count_faces_of_other_models(self, model_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.faces)
                                    .where(s.faces.c.model_id != model_id)).scalar_one())

    def faces_of_other_models(self, model_id: str, after: str, limit: int) -> list[tuple[FaceRecord, bytes | None]]:
        """Faces not embedded by ``model_id`` with ids above ``after``, in id order, with their thumbnails."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.faces).where(s.faces.c.model_id != model_id, s.faces.c.id > after)
                                .order_by(s.faces.c.id).limit(limit)).all()
        return [(self._face(r), r.thumbnail) for r in rows]

    def replace_embeddings(self, vectors: dict[str, np.ndarray], model_id: str) -> dict[str, tuple[str, str, int]]:
        """{face id: (its subject pk now, its gallery, the gallery version of the change)} of the faces
        given new embeddings, in one transaction (see ``replace_embeddings``)."""
        with self.engine.begin() as conn:
            found: dict[str, tuple[str, str, int]] = {}
            for face_id, vector in vectors.items():
                row = conn.execute(select(s.faces.c.subject_pk, s.faces.c.gallery_id)
                                   .where(s.faces.c.id == face_id)).first()
                if row is None:
                    continue  # deleted since it was read
                version = _bump(conn, row.gallery_id)
                conn.execute(update(s.faces).where(s.faces.c.id == face_id).values(
                    embedding=np.asarray(vector, np.float32).tobytes(), model_id=model_id))
                found[face_id] = (row.subject_pk, row.gallery_id, version)
        return found

    # -- idempotency keys (api/idempotency.py) -----------------------------------------
    def claim_key(self, scope: str, key: str, fingerprint: str, owner: str, now: float) -> StoredAnswer | None:
        """Claim ``key`` for a request; None when claimed now, else the row as it is."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(s.idempotency_keys).values(
                    scope=scope, key=key, fingerprint=fingerprint, state="running", owner=owner, started_at=now,
                    created_at=now))
            return None
        except IntegrityError:
            pass
        answer = self.stored_answer(scope, key)
        if answer is None:  # forgotten between the two statements: claim again
            return self.claim_key(scope, key, fingerprint, owner, now)
        return answer

    def stored_answer(self, scope: str, key: str) -> StoredAnswer | None:
        k = s.idempotency_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(select(s.idempotency_keys).where(k.scope == scope, k.key == key)).first()
        if row is None:
            return None
        return StoredAnswer(row.fingerprint, row.state, row.owner, row.started_at, row.status, row.content_type,
                            json.loads(row.headers or "{}"), row.body)

    def take_over_key(self, scope: str, key: str, started_at: float, owner: str, now: float) -> bool:
        """Claim a key whose claim (from ``started_at``) went stale; False if another took it first."""
        k = s.idempotency_keys.c
        with self.engine.begin() as conn:
            done = conn.execute(update(s.idempotency_keys).where(
                k.scope == scope, k.key == key, k.state == "running", k.started_at == started_at)
                .values(owner=owner, started_at=now))
        return bool(done.rowcount)

    def store_answer(self, scope: str, key: str, status: int, content_type: str, headers: dict[str, str],
                     body: bytes) -> None:
        k = s.idempotency_keys.c
        with self.engine.begin() as conn:
            conn.execute(update(s.idempotency_keys).where(k.scope == scope, k.key == key).values(
                state="done", status=status, content_type=content_type, headers=json.dumps(headers), body=body))

    def release_key(self, scope: str, key: str) -> None:
        """Forget a claim whose request failed: a retry runs it again."""
        k = s.idempotency_keys.c
        with self.engine.begin() as conn:
            conn.execute(delete(s.idempotency_keys).where(k.scope == scope, k.key == key, k.state == "running"))

    def forget_keys(self, before: float) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(s.idempotency_keys)
                                    .where(s.idempotency_keys.c.created_at < before)).rowcount)
