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

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
import numpy as np

from events import (
    EventError, GroupChanged, GroupCreated, GroupDeleted, GroupingEvent, GroupMerged, GroupReembedded, decode_as,
    decode_vector,
)
from repo.sync import Sequencer, VersionWaiters

from .clusters import GroupIndex
from .store import GroupStore

__all__ = ("GroupMirror",)

log = logging.getLogger(__name__)


class GroupMirror:
    def __init__(self, store: GroupStore, dim: int, model_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.dim = dim
        self.model_id = model_id
        self._indexes: dict[str, GroupIndex] = {}  # tenant -> its groups
        self._sequencer: Sequencer[str, GroupingEvent] = Sequencer(clock)
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
    def apply(self, message: GroupingEvent | bytes | str | Mapping[str, Any]) -> None:
        """One /topic/grouping.events message (or this node's own change); other events are ignored."""
        try:
            event = decode_as(message, GroupingEvent)
        except EventError as exc:
            log.warning("ignored a grouping event: %s", exc)
            return
        if event is None:
            return
        if event.version is None:
            return  # changes nothing the index holds (status, promotion)
        with self._lock:
            for ready in self._sequencer.offer(event.tenant, event.version, event):
                self._apply(ready)
            self._wake()

    def _apply(self, event: GroupingEvent) -> None:
        try:
            self._apply_event(event)
        except (KeyError, TypeError, ValueError) as exc:  # e.g. a vector of another size: read the database
            log.warning("could not apply %s %s (%s); reloading from the database", event.TYPE, event.id, exc)
            self._sequencer.mark_gap(event.tenant)

    def _apply_event(self, event: GroupingEvent) -> None:
        index = self.index(event.tenant)
        match event:
            case GroupCreated():  # and GroupGrown
                if event.model_id == self.model_id:
                    self._add(event.tenant, index, event.group, event.embedding)
            case GroupMerged():
                for other in event.merged:
                    index.merge(event.group, other)
            case GroupChanged():  # faces moved into "group", or removed
                for face in event.faces:
                    if face.model_id != self.model_id:
                        continue  # another model's faces are not in the index
                    vector = decode_vector(face.embedding)
                    if vector is None:
                        self._sequencer.mark_gap(event.tenant)
                        continue
                    index.remove(face.from_group, vector[None, :])
                    if event.moved:
                        index.add(event.group, vector[None, :])
            case GroupDeleted():
                index.drop(event.group)
            case GroupReembedded():
                for reembedded in event.faces:
                    self._add(event.tenant, index, reembedded.group, reembedded.embedding)

    def _add(self, tenant: str, index: GroupIndex, group: str, embedding: str | None) -> None:
        vector = decode_vector(embedding)
        if vector is None:  # a copy without its vector: the index cannot follow it, the database can
            self._sequencer.mark_gap(tenant)
        else:
            index.add(group, vector[None, :])

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
