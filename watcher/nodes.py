"""Watcher nodes: the `facewatch serve` processes that run cameras, as the database knows them.

A node records itself when it starts, refreshes its last-seen time (its
heartbeat) while it runs, and records when it leaves (a clean stop). A camera
can only prefer a node that exists (or once existed); which nodes are alive
(heard from lately, not gone) is what the failover plans with
(watcher/placement.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Float, Integer, String, Table, insert, select, update

from repo import schema as repo_schema
from repo.store import RepoStore

__all__ = ("NodeInfo", "NodeRegistry", "nodes", "create_nodes_table", "add_left_at")

nodes = Table(
    "watcher_nodes", repo_schema.metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("left_at", Float),  # when it stopped cleanly (NULL: running, or died)
)


def create_nodes_table(conn: Connection) -> None:
    nodes.create(conn, checkfirst=True)


def add_left_at(conn: Connection) -> None:
    repo_schema.add_column(conn, "watcher_nodes", "left_at", "FLOAT")


@dataclass(slots=True, frozen=True)
class NodeInfo:
    name: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    left_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "pid": self.pid, "started_at": self.started_at,
                "last_seen": self.last_seen, "left_at": self.left_at}


def _node(row: Any) -> NodeInfo:
    return NodeInfo(row.name, row.host, row.pid, row.started_at, row.last_seen, row.left_at)


class NodeRegistry:
    def __init__(self, store: RepoStore) -> None:
        """The table is the watcher component's (watcher/registry.py migrates it)."""
        self.engine = store.engine

    def announce(self, name: str, host: str, pid: int) -> NodeInfo:
        """This node starts (again): recorded, or its record renewed."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(update(nodes).where(nodes.c.name == name).values(
                host=host, pid=pid, started_at=now, last_seen=now, left_at=None))
            if done.rowcount == 0:
                conn.execute(insert(nodes).values(name=name, host=host, pid=pid, started_at=now, last_seen=now))
        return NodeInfo(name, host, pid, now, now)

    def seen(self, name: str, now: float | None = None) -> None:
        """The node's heartbeat."""
        with self.engine.begin() as conn:
            conn.execute(update(nodes).where(nodes.c.name == name).values(
                last_seen=time.time() if now is None else now))

    def leave(self, name: str) -> None:
        """The node stops cleanly: no longer alive, whatever its last heartbeat."""
        with self.engine.begin() as conn:
            conn.execute(update(nodes).where(nodes.c.name == name).values(left_at=time.time()))

    def get(self, name: str) -> NodeInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(nodes).where(nodes.c.name == name)).first()
        return None if row is None else _node(row)

    def all(self) -> list[NodeInfo]:
        with self.engine.connect() as conn:
            return [_node(r) for r in conn.execute(select(nodes).order_by(nodes.c.name)).all()]
