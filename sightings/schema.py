"""Sightings' tables in the repo's database (component "sightings" of component_migrations)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger, Boolean, Column, Connection, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text,
    UniqueConstraint,
)

from repo import schema as repo_schema

__all__ = ("sightings", "crops", "counters", "retention", "erasures", "MIGRATIONS")

# One row per face.recognized / face.unknown. ``seq`` numbers a tenant's sightings densely in commit order
# (allocated from ``counters`` under that row's lock): the cursor a client catches up from.
sightings = Table(
    "sightings", repo_schema.metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("camera", String(64), nullable=False),
    Column("track", Integer),
    Column("kind", String(16), nullable=False),  # recognized | unknown | erased
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("seen_at", Float, nullable=False),  # the best shot's time: what retention and time filters use
    Column("stored_at", Float, nullable=False),
    Column("subject_pk", String(64)),  # the subject named (its name and id as the event gave them)
    Column("subject_id", String(200)),
    Column("subject_name", String(300)),
    Column("gallery", String(200)),
    Column("group_id", String(64)),  # the face group grouping placed an unknown face in
    Column("similarity", Float),
    Column("runner_up_pk", String(64)),
    Column("runner_up_id", String(200)),
    Column("runner_up_gallery", String(200)),
    Column("runner_up_similarity", Float),
    Column("threshold", Float),
    Column("margin", Float),
    Column("reason", String(32)),
    Column("quality", Float, nullable=False),
    Column("model_id", String(200)),
    Column("embedding", LargeBinary),  # float32; NULL once past the tenant's embedding retention
    Column("has_crop", Boolean, nullable=False),
    Column("relabelled_at", Float),  # retroactive naming: when an unknown sighting was named
    UniqueConstraint("tenant_id", "seq", name="uq_sightings_seq"),
    UniqueConstraint("event_id", name="uq_sightings_event"),  # a redelivered event is stored once
    Index("ix_sightings_tenant_seen", "tenant_id", "seen_at"),
    Index("ix_sightings_tenant_camera", "tenant_id", "camera", "seq"),
    Index("ix_sightings_tenant_subject", "tenant_id", "subject_pk", "seq"),
    Index("ix_sightings_tenant_group", "tenant_id", "group_id"),
    Index("ix_sightings_tenant_kind", "tenant_id", "kind", "seq"),
    Index("ix_sightings_runner_up", "tenant_id", "runner_up_pk"),
)
# The best crop of a sighting, apart: listings never read it, and retention drops it alone.
crops = Table(
    "sighting_crops", repo_schema.metadata,
    Column("sighting_id", String(32), ForeignKey("sightings.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("crop", LargeBinary, nullable=False),  # JPEG
    Index("ix_sighting_crops_tenant_seen", "tenant_id", "seen_at"),
)
counters = Table(
    "sighting_counters", repo_schema.metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the last sequence number given out
)
# A tenant's own retention (a NULL column: kept for ever); no row: the configured defaults.
retention = Table(
    "sighting_retention", repo_schema.metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("recognized_s", Float),
    Column("unknown_s", Float),
    Column("crop_s", Float),
    Column("embedding_s", Float),
    Column("updated_at", Float, nullable=False),
)
# The audit log of erasures: who erased which subject (by its opaque pk) when, and how much went;
# never the erased data itself. A row is written before the erasure starts (a sighting of that subject
# stored meanwhile is stored erased) and finished with the counts.
erasures = Table(
    "erasures", repo_schema.metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("subject_pk", String(64), nullable=False),
    Column("actor", String(300), nullable=False),  # "api_key:<key id>" or "token:<client id>"
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("counts", Text),  # JSON: how many faces, images, sightings, crops, embeddings, groups
    Index("ix_erasures_tenant", "tenant_id", "started_at"),
    Index("ix_erasures_subject", "tenant_id", "subject_pk"),
)


def _v1(conn: Connection) -> None:
    for table in (sightings, crops, counters, retention, erasures):
        table.create(conn, checkfirst=True)


MIGRATIONS: list[repo_schema.Migration] = [(1, _v1)]
