"""Tables and migrations, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger, Boolean, Column, Connection, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table,
    Text, UniqueConstraint, insert, inspect, select, text,
)

__all__ = ("metadata", "tenants", "clients", "api_keys", "refresh_tokens", "settings", "galleries", "subjects",
           "faces", "negatives", "jobs", "job_inputs", "idempotency_keys", "migrate", "migrate_component", "add_column",
           "Migration", "MIGRATIONS")

Migration = tuple[int, Callable[[Connection], None]]

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)
# Packages that build on the repo (watcher, grouping) keep their own tables and
# version numbers here, so the repo never imports them.
component_migrations = Table(
    "component_migrations", metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)
settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
tenants = Table(
    "tenants", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)
clients = Table(
    "clients", metadata,
    Column("id", String(64), primary_key=True),  # the client id used to log in
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(300), nullable=False),
    Column("created_at", Float, nullable=False),
)
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(64), primary_key=True),  # the public part of the key
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("name", String(200), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("scope", Text, nullable=True),  # api.scopes.KeyScope as JSON; NULL (keys made before v5): full
)
refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("id", String(64), primary_key=True),
    Column("secret_hash", String(128), nullable=False),
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
galleries = Table(
    "galleries", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    # The gallery's change sequence: every change its in-memory index follows takes the next
    # value in the change's own transaction, and its event carries it (repo/sync.py).
    Column("version", BigInteger, nullable=False, default=0, server_default="0"),
    UniqueConstraint("tenant_id", "name", name="uq_gallery_name"),
)
subjects = Table(
    "subjects", metadata,
    Column("pk", String(64), primary_key=True),
    Column("gallery_id", String(64), ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
    Column("id", String(200), nullable=False),  # the caller's id, unique in its gallery
    Column("name", String(300), nullable=False),
    Column("meta", Text, nullable=False, default="{}"),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("gallery_id", "id", name="uq_subject_id"),
    UniqueConstraint("gallery_id", "name", name="uq_subject_name"),
)
faces = Table(
    "faces", metadata,
    Column("id", String(64), primary_key=True),
    Column("subject_pk", String(64), ForeignKey("subjects.pk", ondelete="CASCADE"), nullable=False),
    Column("gallery_id", String(64), ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
    Column("box", Text, nullable=False),
    Column("landmarks", Text, nullable=False),
    Column("det_score", Float, nullable=False),
    Column("quality", Float, nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32, L2-normalised
    Column("model_id", String(200), nullable=False),
    Column("photo_hash", String(64), nullable=False),
    Column("image_key", String(80)),  # content address under the image store, or NULL
    Column("thumbnail", LargeBinary),
    Column("created_at", Float, nullable=False),
    Column("job_item", String(120)),  # "<job>/<item>" for faces a bulk job added: a resumed job skips them
    Index("ix_faces_gallery", "gallery_id"),
    Index("ix_faces_subject", "subject_pk"),
)
# "This is not X" (repo feedback): a face of someone else that came close to X. Identification
# does not name X for a probe closer to X's negatives than to X's own faces (repo/decision.py).
negatives = Table(
    "negatives", metadata,
    Column("id", String(64), primary_key=True),
    Column("subject_pk", String(64), ForeignKey("subjects.pk", ondelete="CASCADE"), nullable=False),
    Column("gallery_id", String(64), ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32, L2-normalised
    Column("model_id", String(200), nullable=False),
    Column("source", String(200), nullable=False),  # what the caller said it was (an event, a sighting...)
    Column("thumbnail", LargeBinary),
    Column("created_at", Float, nullable=False),
    Index("ix_negatives_gallery", "gallery_id"),
)
jobs = Table(
    "jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("done", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=False, default=0),
    Column("result", Text, nullable=False, default="{}"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The lease on running it (repo/jobs.py): the instance (data directory) that holds it, its fencing number
    # (one more at each claim) and its expiry (wall clock; NULL: a job from before leases, expired).
    Column("runner", String(64)),
    Column("lease_epoch", Integer, nullable=False, default=0, server_default="0"),
    Column("lease_expires_at", Float),
)
# A job's input (the zip), until the job ends: in the database, so any node can resume the job.
job_inputs = Table(
    "job_inputs", metadata,
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


# Write requests that carried an idempotency key, and their answers: a request redelivered (or
# retried) with the same key gets the stored answer instead of being applied again (api/idempotency.py).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),  # the tenant (keys are the caller's: one tenant's never clash)
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # of the request: a key reused for another is refused
    Column("state", String(16), nullable=False),  # running | done
    Column("owner", String(200), nullable=False),  # the node running it
    Column("started_at", Float, nullable=False),
    Column("status", Integer),
    Column("content_type", String(200)),
    Column("headers", Text),  # JSON
    Column("body", LargeBinary),
    Column("created_at", Float, nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),
)


def _v1_initial(conn: Connection) -> None:
    for table in (settings, tenants, clients, api_keys, refresh_tokens, galleries, subjects, faces, jobs):
        table.create(conn, checkfirst=True)
    conn.execute(insert(settings).values(key="token_signing_key", value=secrets.token_hex(32)))


def add_column(conn: Connection, table: str, column: str, sql_type: str) -> None:
    """For a migration: add ``column`` unless the table has it already (tables made by a v1 step from
    today's metadata do; databases made before the column existed get it here)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def _v2_job_item(conn: Connection) -> None:
    add_column(conn, "faces", "job_item", "VARCHAR(120)")
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_faces_job_item ON faces (job_item)"))


def _v3_job_runner(conn: Connection) -> None:
    add_column(conn, "jobs", "runner", "VARCHAR(64)")


def _v4_negatives(conn: Connection) -> None:
    negatives.create(conn, checkfirst=True)


def _v5_key_scopes(conn: Connection) -> None:
    add_column(conn, "api_keys", "scope", "TEXT")


def _v6_nodes(conn: Connection) -> None:
    add_column(conn, "galleries", "version", "BIGINT NOT NULL DEFAULT 0")
    idempotency_keys.create(conn, checkfirst=True)


def _v7_job_leases(conn: Connection) -> None:
    add_column(conn, "jobs", "lease_epoch", "INTEGER NOT NULL DEFAULT 0")
    add_column(conn, "jobs", "lease_expires_at", "FLOAT")
    job_inputs.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [(1, _v1_initial), (2, _v2_job_item), (3, _v3_job_runner), (4, _v4_negatives),
                               (5, _v5_key_scopes), (6, _v6_nodes), (7, _v7_job_leases)]


def migrate(conn: Connection) -> int:
    """Apply the migrations this database has not seen; returns the version."""
    schema_migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(select(schema_migrations.c.version)).scalars())
    for version, step in MIGRATIONS:
        if version not in applied:
            step(conn)
            conn.execute(insert(schema_migrations).values(version=version, applied_at=time.time()))
    return max(v for v, _ in MIGRATIONS)


def migrate_component(conn: Connection, component: str, steps: list[Migration]) -> int:
    """Like ``migrate``, for one component's own tables."""
    component_migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(select(component_migrations.c.version)
                               .where(component_migrations.c.component == component)).scalars())
    for version, step in steps:
        if version not in applied:
            step(conn)
            conn.execute(insert(component_migrations).values(component=component, version=version,
                                                             applied_at=time.time()))
    return max(v for v, _ in steps)


def table_names(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names())
