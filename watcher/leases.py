"""Camera leases: which watcher node runs a camera, for how long, under which fencing number.

A node runs a camera only while it holds the camera's lease, and renews it
well before it expires. A lease that expired (its node died, hung or lost the
database) or was released (its node stopped, or handed the camera back to its
preferred node) may be claimed by any node. Each claim takes the next
``epoch``: the fencing number every event of the camera carries, so a stale
owner (a node that wakes up after its lease was taken) can be told apart, and
is refused at its next renewal, which names the epoch it holds.

Every change is one conditional UPDATE (compare-and-set on the epoch), the same
SQL on SQLite and PostgreSQL. Times are the nodes' wall clocks (``time.time()``):
nodes sharing a database must keep their clocks in step (NTP) to well under a
lease's length.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Float, Integer, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from repo import schema as repo_schema
from repo.store import RepoStore

__all__ = ("Lease", "LeaseGrant", "Claim", "CameraLeases", "camera_leases", "create_leases_table")

camera_leases = Table(
    "camera_leases", repo_schema.metadata,
    Column("camera", String(64), primary_key=True),
    Column("owner", String(200)),  # the node that holds it; NULL: released (any node may claim it now)
    Column("epoch", Integer, nullable=False),  # the fencing number: one more at every claim
    Column("expires_at", Float, nullable=False),  # wall-clock seconds; renewed by the owner
)


def create_leases_table(conn: Connection) -> None:
    camera_leases.create(conn, checkfirst=True)


@dataclass(slots=True, frozen=True)
class Lease:
    camera: str
    owner: str | None
    epoch: int
    expires_at: float

    def held(self, now: float) -> bool:
        """Some node holds it (it has not expired, nor been released)."""
        return self.owner is not None and self.expires_at > now


@dataclass(slots=True, frozen=True)
class LeaseGrant:
    """What a camera's worker is told of the lease it runs under (picklable, for the worker's spec)."""

    node: str
    epoch: int
    expires_at: float
    ttl_s: float


@dataclass(slots=True, frozen=True)
class Claim:
    lease: Lease
    previous: Lease | None  # the lease it replaced (None: the camera had none)

    def taken_from(self) -> str | None:
        """The node whose lease expired under it (that node is down), or None (released, new, our own)."""
        before = self.previous
        if before is None or before.owner is None or before.owner == self.lease.owner:
            return None
        return before.owner


def _lease(row: Any) -> Lease:
    return Lease(row.camera, row.owner, int(row.epoch), float(row.expires_at))


class CameraLeases:
    def __init__(self, store: RepoStore) -> None:
        """The table is the watcher component's (watcher/registry.py migrates it)."""
        self.engine = store.engine

    def get(self, camera_id: str) -> Lease | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(camera_leases).where(camera_leases.c.camera == camera_id)).first()
        return None if row is None else _lease(row)

    def all(self) -> dict[str, Lease]:
        with self.engine.connect() as conn:
            return {r.camera: _lease(r) for r in conn.execute(select(camera_leases)).all()}

    def claim(self, camera_id: str, node: str, ttl_s: float, now: float | None = None) -> Claim | None:
        """Take the camera's lease for ``node`` if no other node holds it: the next epoch, ``ttl_s`` long.
        None when another node holds it or won the race for it."""
        now = time.time() if now is None else now
        before = self.get(camera_id)
        if before is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(camera_leases).values(camera=camera_id, owner=node, epoch=1,
                                                              expires_at=now + ttl_s))
            except IntegrityError:  # another node inserted it first
                return None
            return Claim(Lease(camera_id, node, 1, now + ttl_s), None)
        if before.owner not in (None, node) and before.expires_at > now:
            return None
        with self.engine.begin() as conn:
            done = conn.execute(update(camera_leases).where(
                camera_leases.c.camera == camera_id, camera_leases.c.epoch == before.epoch,
            ).values(owner=node, epoch=before.epoch + 1, expires_at=now + ttl_s))
        if done.rowcount != 1:  # another claim came between the read and the write
            return None
        return Claim(Lease(camera_id, node, before.epoch + 1, now + ttl_s), before)

    def renew(self, node: str, held: Mapping[str, int], ttl_s: float, now: float | None = None) -> dict[str, float]:
        """Extend ``node``'s leases (camera -> the epoch it holds); returns camera -> new expiry for those
        still its own. One missing was taken by another node (or deleted): its worker must stop."""
        now = time.time() if now is None else now
        renewed: dict[str, float] = {}
        with self.engine.begin() as conn:
            for camera_id, epoch in held.items():
                done = conn.execute(update(camera_leases).where(
                    camera_leases.c.camera == camera_id, camera_leases.c.owner == node,
                    camera_leases.c.epoch == epoch,
                ).values(expires_at=now + ttl_s))
                if done.rowcount == 1:
                    renewed[camera_id] = now + ttl_s
        return renewed

    def release(self, node: str, held: Mapping[str, int]) -> None:
        """Give leases up (the node stops, or hands a camera over): any node may claim them at once,
        and none reports the camera's node as down."""
        with self.engine.begin() as conn:
            for camera_id, epoch in held.items():
                conn.execute(update(camera_leases).where(
                    camera_leases.c.camera == camera_id, camera_leases.c.owner == node,
                    camera_leases.c.epoch == epoch,
                ).values(owner=None, expires_at=0.0))

    def forget(self, camera_id: str) -> None:
        """The camera was removed while no node held it: nobody's lease (the row stays, so that a camera
        registered again under this id continues its epochs)."""
        with self.engine.begin() as conn:
            conn.execute(update(camera_leases).where(camera_leases.c.camera == camera_id)
                         .values(owner=None, expires_at=0.0))
