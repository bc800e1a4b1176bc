"""Cameras persisted in the repo's database (SQLite or PostgreSQL).

The watcher owns its table and migrations (component "watcher"); the repo
only provides the engine and the migration runner.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import (
    Boolean, Column, Connection, Float, ForeignKey, Index, String, Table, Text, delete, func, insert, select, text,
    update,
)

from api.errors import Conflict, NotFound
from repo import schema as repo_schema
from repo.store import RepoStore

from .cameras import Camera, CameraSettings
from .leases import create_leases_table
from .nodes import add_left_at, create_nodes_table

__all__ = ("CameraRegistry", "cameras")

cameras = Table(
    "cameras", repo_schema.metadata,
    Column("id", String(64), primary_key=True),  # global: it names the topic
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("settings", Text, nullable=False),  # CameraSettings as JSON
    Column("enabled", Boolean, nullable=False),
    # The watcher node it prefers: it runs there whenever that node is alive (watcher/failover.py).
    # NULL: registered before nodes existed (any node).
    Column("node", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_cameras_tenant", "tenant_id"),
)


def _v1_cameras(conn: Connection) -> None:
    # The table as version 1 made it; version 2 adds the node column.
    conn.execute(text("CREATE TABLE IF NOT EXISTS cameras (id VARCHAR(64) PRIMARY KEY, tenant_id VARCHAR(64) NOT NULL "
                      "REFERENCES tenants(id) ON DELETE CASCADE, settings TEXT NOT NULL, enabled BOOLEAN NOT NULL, "
                      "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_cameras_tenant ON cameras (tenant_id)"))


def _v2_nodes(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE cameras ADD COLUMN node VARCHAR(200)"))


MIGRATIONS: list[repo_schema.Migration] = [(1, _v1_cameras), (2, _v2_nodes), (3, create_nodes_table),
                                           (4, create_leases_table), (5, add_left_at)]


def _camera(row: Any) -> Camera:
    return Camera(row.id, row.tenant_id, CameraSettings.model_validate(json.loads(row.settings)), bool(row.enabled),
                  row.created_at, row.updated_at, row.node)


class CameraRegistry:
    def __init__(self, store: RepoStore) -> None:
        self.store = store
        self.engine = store.engine
        store.migrate_component("watcher", MIGRATIONS)

    def add(self, tenant_id: str, camera_id: str, settings: CameraSettings, enabled: bool, max_per_tenant: int,
            node: str) -> Camera:
        now = time.time()
        camera = Camera(camera_id, tenant_id, settings, enabled, now, now, node)
        with self.engine.begin() as conn:
            count = conn.execute(select(func.count()).select_from(cameras)
                                 .where(cameras.c.tenant_id == tenant_id)).scalar_one()
            if count >= max_per_tenant:
                raise Conflict(f"this tenant already has {count} cameras, the most allowed "
                               "(watcher.max_cameras_per_tenant)")
            if conn.execute(select(cameras.c.id).where(cameras.c.id == camera_id)).first() is not None:
                # Ids are global (they name topics); say no more than "taken".
                raise Conflict(f"camera id {camera_id!r} is taken", "id")
            conn.execute(insert(cameras).values(id=camera_id, tenant_id=tenant_id, settings=settings.model_dump_json(),
                                                enabled=enabled, created_at=now, updated_at=now, node=node))
        return camera

    def get(self, tenant_id: str, camera_id: str) -> Camera:
        with self.engine.connect() as conn:
            row = conn.execute(select(cameras)
                               .where(cameras.c.id == camera_id, cameras.c.tenant_id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no camera {camera_id!r}", "camera")
        return _camera(row)

    def by_id(self, camera_id: str) -> Camera | None:
        """Any tenant's camera (for the watcher nodes themselves, never for requests)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(cameras).where(cameras.c.id == camera_id)).first()
        return None if row is None else _camera(row)

    def owner(self, camera_id: str) -> str | None:
        """The tenant a camera belongs to (for topic permissions), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(cameras.c.tenant_id).where(cameras.c.id == camera_id)).scalar()

    def of_tenant(self, tenant_id: str) -> list[Camera]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(cameras).where(cameras.c.tenant_id == tenant_id).order_by(cameras.c.id)).all()
        return [_camera(r) for r in rows]

    def all(self) -> list[Camera]:
        with self.engine.connect() as conn:
            return [_camera(r) for r in conn.execute(select(cameras).order_by(cameras.c.id)).all()]

    def update(self, camera: Camera, settings: CameraSettings | None = None, enabled: bool | None = None,
               node: str | None = None) -> Camera:
        now = time.time()
        new = Camera(camera.id, camera.tenant_id, settings or camera.settings,
                     camera.enabled if enabled is None else enabled, camera.created_at, now, node or camera.node)
        with self.engine.begin() as conn:
            done = conn.execute(update(cameras)
                                .where(cameras.c.id == camera.id, cameras.c.tenant_id == camera.tenant_id)
                                .values(settings=new.settings.model_dump_json(), enabled=new.enabled, updated_at=now,
                                        node=new.node))
        if done.rowcount == 0:
            raise NotFound(f"no camera {camera.id!r}", "camera")
        return new

    def remove(self, camera: Camera) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(cameras).where(cameras.c.id == camera.id, cameras.c.tenant_id == camera.tenant_id))
