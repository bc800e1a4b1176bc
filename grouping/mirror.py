"""Each tenant's group index, kept equal to the database on every node.

Placing a face compares it with every group of its tenant, so a tenant's
groups are one stream of versioned changes (repo/sync.py). The grouping
events (/topic/grouping.events) carry what the index needs (the embeddings
added, moved, removed), so every node applies every change, its own and the
others', in version order; a lost event gets the tenant's index reloaded from a
snapshot of the database.

Thread-safe: events arrive on the bus client's thread, changes made here on
the event loop, reloads in a worker thread.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from repo.sync import Sequencer, VersionWaiters

from .clusters import GroupIndex
from .store import GroupStore

__all__ = ("GroupMirror", "encode_vector")


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, np.float32).tobytes()).decode()


def _vector(encoded: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(str(encoded)), np.float32)


class GroupMirror:
    def __init__(self, store: GroupStore, dim: int, model_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.dim = dim
        self.model_id = model_id
        self._indexes: dict[str, GroupIndex] = {}  # tenant -> its groups
        self._sequencer: Sequencer[str, dict[str, Any]] = Sequencer(clock)
        self._waiters: VersionWaiters[str] = VersionWaiters()
        self._lock = threading.RLock()
        self._reloading = threading.Lock()  # one reload at a time: a later snapshot is never replaced by an older one
        self.reloads = 0

    def index(self, tenant_id: str) -> GroupIndex:
        with self._lock:
            index = self._indexes.get(tenant_id)
            if index is None:
                index = self._indexes[tenant_id] = GroupIndex(self.dim)
            return index

    def applied(self, tenant_id: str) -> int:
        with self._lock:
            return self._sequencer.applied(tenant_id)

    # -- following ---------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """One /topic/grouping.events message (or this node's own change)."""
        tenant, version = event.get("tenant"), event.get("version")
        if not isinstance(tenant, str) or not isinstance(version, int) or isinstance(version, bool):
            return  # changes nothing the index holds (status, promotion)
        with self._lock:
            for ready in self._sequencer.offer(tenant, version, event):
                self._apply(ready)
            self._wake()

    def _apply(self, event: dict[str, Any]) -> None:
        tenant, kind = str(event["tenant"]), event.get("type")
        index = self.index(tenant)
        try:
            if kind in ("group.created", "group.grown"):
                if event["model_id"] == self.model_id:
                    index.add(str(event["group"]), _vector(event["embedding"])[None, :])
            elif kind == "group.merged":
                for other in event["merged"]:
                    index.merge(str(event["group"]), str(other))
            elif kind == "group.changed":  # faces moved into "group", or removed
                for face in event["faces"]:
                    if face["model_id"] != self.model_id:
                        continue  # another model's faces are not in the index
                    vector = _vector(face["embedding"])[None, :]
                    index.remove(str(face["from"]), vector)
                    if "moved" in event:
                        index.add(str(event["group"]), vector)
            elif kind == "group.deleted":
                index.drop(str(event["group"]))
            elif kind == "group.reembedded":
                for face in event["faces"]:
                    index.add(str(face["group"]), _vector(face["embedding"])[None, :])
        except (KeyError, TypeError, ValueError):  # from a node that did not say enough: read the database
            self._sequencer.mark_gap(tenant)

    def when_applied(self, tenant_id: str, version: int, callback: Callable[[], None]) -> int | None:
        """Call ``callback`` once the index holds ``version`` of the tenant's groups; None if it does
        already (then it is not called), else a token for ``forget``."""
        with self._lock:
            return None if self._holds(tenant_id, version) else self._waiters.add(tenant_id, version, callback)

    def forget(self, token: int) -> None:
        with self._lock:
            self._waiters.forget(token)

    def _holds(self, tenant_id: str, version: int) -> bool:
        return self._sequencer.applied(tenant_id) >= version

    def _wake(self) -> None:
        self._waiters.wake(self._holds)

    # -- reading the database --------------------------------------------------------------
    def load(self) -> int:
        """Every tenant's groups from the database; returns the face count."""
        count = 0
        for tenant in self.store.tenants():
            count += self.reload(tenant)
        return count

    def reload(self, tenant_id: str) -> int:
        """The tenant's groups from one snapshot, then the events held beyond its version; returns the
        face count. Blocking: call it off the event loop."""
        with self._reloading:
            with self._lock:
                self._sequencer.begin_reload(tenant_id)
            index = GroupIndex(self.dim)
            count = 0

            def add(group: str, vector: np.ndarray) -> None:
                nonlocal count
                index.add(group, vector[None, :])
                count += 1

            try:
                version = self.store.read_tenant(tenant_id, self.model_id, add)
            except BaseException:
                with self._lock:
                    self._sequencer.abort_reload(tenant_id)
                raise
            with self._lock:
                self.reloads += 1
                self._indexes[tenant_id] = index
                for event in self._sequencer.end_reload(tenant_id, version):
                    self._apply(event)
                self._wake()
        return count

    def due(self, grace_s: float) -> list[str]:
        with self._lock:
            return self._sequencer.due(grace_s)

    def reconcile(self) -> int:
        """Expect every tenant's version from the database (one query): a tenant whose events do not come
        within the grace period is then due for a reload. Returns how many tenants were behind."""
        behind = 0
        versions = self.store.tenants()
        with self._lock:
            for tenant, version in versions.items():
                if self._sequencer.applied(tenant) < version:
                    self._sequencer.expect(tenant, version)
                    behind += 1
        return behind
