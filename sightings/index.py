"""Search of sightings by face, in memory, per tenant, partitioned by time.

Each partition holds the sightings seen in one ``partition_s`` span (a day by
default): an L2-normalised float32 matrix, the 512-bit sign codes of its rows
(repo/index.py), the time and camera of each row. A search takes only the
partitions its time filter reaches (rows at the edges by their times), so a
24-hour filter over a year of sightings scores a day or two of them. Over the
rows it takes, it does what the repo's gallery index does: up to
``exact_max_faces`` rows every row is scored; above that, each partition's rows
nearest to the query by Hamming distance over the codes (the same share of
each) are scored exactly. Ranking is by cosine similarity, one hit per sighting.

Retention drops whole partitions (and the edge of one) by time, erasure and
retention of single rows remove them; a removed row's place is taken by the
partition's last row.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from repo.index import SearchOptions, nearest_codes, prescan_size, sign_codes

__all__ = ("IndexOptions", "Hit", "SightingIndex")


@dataclass(slots=True, frozen=True)
class IndexOptions:
    search: SearchOptions = SearchOptions()
    partition_s: float = 86400.0


@dataclass(slots=True, frozen=True)
class Hit:
    sighting_id: str
    similarity: float
    seen_at: float


def _grown(array: np.ndarray, used: int, rows: int) -> np.ndarray:
    grown = np.zeros((rows, *array.shape[1:]), array.dtype)
    grown[:used] = array[:used]
    return grown


class _Partition:
    """The rows of one time span; its tenant's lock guards it."""

    def __init__(self, dim: int, capacity: int = 256) -> None:
        self.n = 0
        self.matrix = np.zeros((capacity, dim), np.float32)
        self.codes = np.zeros((capacity, (dim + 7) // 8), np.uint8)
        self.times = np.zeros(capacity, np.float64)
        self.cameras = np.zeros(capacity, np.int32)
        self.ids: list[str] = []
        self.row: dict[str, int] = {}

    def add(self, ids: list[str], vectors: np.ndarray, times: np.ndarray, cameras: np.ndarray) -> None:
        need = self.n + len(ids)
        if need > len(self.matrix):
            size = max(need, 2 * len(self.matrix))
            self.matrix, self.codes = _grown(self.matrix, self.n, size), _grown(self.codes, self.n, size)
            self.times, self.cameras = _grown(self.times, self.n, size), _grown(self.cameras, self.n, size)
        block = slice(self.n, need)
        self.matrix[block], self.codes[block] = vectors, sign_codes(vectors)
        self.times[block], self.cameras[block] = times, cameras
        for offset, sighting_id in enumerate(ids):
            self.row[sighting_id] = self.n + offset
        self.ids += ids
        self.n = need

    def remove(self, sighting_id: str) -> bool:
        row = self.row.pop(sighting_id, None)
        if row is None:
            return False
        last = self.n - 1
        if row != last:  # the last row fills the hole
            self.matrix[row], self.codes[row] = self.matrix[last], self.codes[last]
            self.times[row], self.cameras[row] = self.times[last], self.cameras[last]
            self.ids[row] = self.ids[last]
            self.row[self.ids[row]] = row
        self.ids.pop()
        self.n = last
        return True

    def rows(self, start: float | None, end: float | None, cameras: np.ndarray | None) -> np.ndarray | None:
        """Row numbers within the filters; None: every row."""
        mask: np.ndarray | None = None
        times = self.times[:self.n]
        if start is not None and times.min(initial=np.inf) < start:
            mask = times >= start
        if end is not None and times.max(initial=-np.inf) > end:
            mask = (times <= end) if mask is None else mask & (times <= end)
        if cameras is not None:
            chosen = np.isin(self.cameras[:self.n], cameras)
            mask = chosen if mask is None else mask & chosen
        return None if mask is None else np.flatnonzero(mask)


@dataclass(slots=True)
class _Tenant:
    partitions: dict[int, _Partition] = field(default_factory=dict)
    where: dict[str, int] = field(default_factory=dict)  # sighting id -> partition key
    cameras: dict[str, int] = field(default_factory=dict)  # camera id -> its number in ``_Partition.cameras``
    seq: int = 0  # every sighting up to this sequence number has been offered to the index
    lock: threading.Lock = field(default_factory=threading.Lock)


class SightingIndex:
    def __init__(self, dim: int, options: IndexOptions = IndexOptions()) -> None:
        self.dim = dim
        self.options = options
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()  # guards the dict of tenants only

    def _tenant(self, tenant_id: str) -> _Tenant:
        with self._lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is None:
                tenant = self._tenants[tenant_id] = _Tenant()
            return tenant

    def _key(self, seen_at: float) -> int:
        return math.floor(seen_at / self.options.partition_s)

    def size(self, tenant_id: str) -> int:
        tenant = self._tenant(tenant_id)
        with tenant.lock:
            return len(tenant.where)

    def seq(self, tenant_id: str) -> int:
        """The highest sequence number offered with ``add`` (rows of another model or without an
        embedding are offered too: they are simply not kept)."""
        tenant = self._tenant(tenant_id)
        with tenant.lock:
            return tenant.seq

    def add(self, tenant_id: str, ids: list[str], vectors: np.ndarray, times: list[float], cameras: list[str],
            seq: int | None = None) -> int:
        """Index sightings (those already in are skipped); ``seq``: the highest sequence number among them
        (or among the rows read with them). Returns how many were added."""
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        tenant = self._tenant(tenant_id)
        with tenant.lock:
            if seq is not None:
                tenant.seq = max(tenant.seq, seq)
            fresh: dict[int, list[int]] = {}
            for position, sighting_id in enumerate(ids):
                if sighting_id not in tenant.where:
                    key = self._key(times[position])
                    tenant.where[sighting_id] = key
                    fresh.setdefault(key, []).append(position)
            for key, positions in fresh.items():
                partition = tenant.partitions.get(key)
                if partition is None:
                    partition = tenant.partitions[key] = _Partition(self.dim)
                codes = np.array([tenant.cameras.setdefault(cameras[p], len(tenant.cameras)) for p in positions],
                                 np.int32)
                partition.add([ids[p] for p in positions], vectors[positions],
                              np.asarray([times[p] for p in positions], np.float64), codes)
            return sum(len(p) for p in fresh.values())

    def remove(self, tenant_id: str, ids: list[str]) -> int:
        tenant = self._tenant(tenant_id)
        removed = 0
        for start in range(0, len(ids), 1000):  # a long removal lets searches in between
            with tenant.lock:
                for sighting_id in ids[start:start + 1000]:
                    key = tenant.where.pop(sighting_id, None)
                    if key is None:
                        continue
                    partition = tenant.partitions[key]
                    removed += partition.remove(sighting_id)
                    if partition.n == 0:
                        del tenant.partitions[key]
        return removed

    def drop_before(self, tenant_id: str, cutoff: float) -> int:
        """Forget every sighting seen before ``cutoff`` (embedding retention)."""
        tenant = self._tenant(tenant_id)
        with tenant.lock:
            dropped = 0
            for key in [k for k in tenant.partitions if (k + 1) * self.options.partition_s <= cutoff]:
                partition = tenant.partitions.pop(key)
                for sighting_id in partition.ids:
                    del tenant.where[sighting_id]
                dropped += partition.n
            edge = tenant.partitions.get(self._key(cutoff))
            old = [] if edge is None else [edge.ids[r] for r in np.flatnonzero(edge.times[:edge.n] < cutoff)]
        return dropped + self.remove(tenant_id, old)

    def search(self, tenant_id: str, query: np.ndarray, k: int, *, start: float | None = None,
               end: float | None = None, cameras: list[str] | None = None,
               min_similarity: float = -1.0) -> list[Hit]:
        """The ``k`` sightings most similar to one normalised query (at least ``min_similarity``), seen
        between ``start`` and ``end`` on one of ``cameras``, best first."""
        q = np.asarray(query, np.float32).reshape(self.dim)
        tenant = self._tenant(tenant_id)
        with tenant.lock:
            camera_codes = None
            if cameras is not None:
                camera_codes = np.array([tenant.cameras[c] for c in cameras if c in tenant.cameras], np.int32)
                if len(camera_codes) == 0:
                    return []
            first = None if start is None else self._key(start)
            last = None if end is None else self._key(end)
            chosen = [(p, p.rows(start, end, camera_codes)) for key, p in tenant.partitions.items()
                      if (first is None or key >= first) and (last is None or key <= last)]
            total = sum(p.n if rows is None else len(rows) for p, rows in chosen)
            if total == 0 or k <= 0:
                return []
            exact = total <= self.options.search.exact_max_faces
            take_all = prescan_size(self.options.search, total)
            found: list[tuple[np.ndarray, np.ndarray, _Partition]] = []
            for partition, rows in chosen:
                n = partition.n if rows is None else len(rows)
                if n == 0:
                    continue
                if exact:
                    picked = np.arange(n) if rows is None else rows
                else:  # this partition's share of the prescan
                    codes = partition.codes[:n] if rows is None else partition.codes[rows]
                    near = nearest_codes(q, codes, min(n, max(1, math.ceil(take_all * n / total))))
                    picked = near if rows is None else rows[near]
                scores = partition.matrix[:n] @ q if exact and rows is None else partition.matrix[picked] @ q
                keep = np.flatnonzero(scores >= min_similarity)
                if len(keep) > k:
                    keep = keep[np.argpartition(-scores[keep], k - 1)[:k]]
                found.append((picked[keep], scores[keep], partition))
            hits = [Hit(p.ids[int(r)], float(score), float(p.times[int(r)]))
                    for picked, scores, p in found for r, score in zip(picked, scores)]
        hits.sort(key=lambda h: -h.similarity)
        return hits[:k]
