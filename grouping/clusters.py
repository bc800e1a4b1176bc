"""Incremental face grouping by average linkage, in memory.

Each group keeps the sum of its members' (L2-normalised) embeddings. The
average-linkage similarity of a face to a group, the mean of its cosine
similarities to every member, is then one dot product with that sum divided
by the group's size; between two groups it is their sums' dot product over the
product of their sizes. So placing a face costs one (groups x dim) matrix-vector
product, whatever the number of faces, and a refinement pass compares groups
without looking at their faces.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import cast

import numpy as np

__all__ = ("Placement", "GroupIndex")


@dataclass(slots=True, frozen=True)
class Placement:
    group: str | None  # the group the face belongs in, or None: it starts a new one
    similarity: float  # average-linkage similarity to the best group (-1 when there is none)


class GroupIndex:
    def __init__(self, dim: int, capacity: int = 256) -> None:
        self.dim = dim
        self._sums = np.zeros((capacity, dim), np.float32)
        self._counts = np.zeros(capacity, np.int64)
        self._ids: list[str | None] = []  # row -> group id (None: a freed row)
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, group: str) -> bool:
        return group in self._row

    def size(self, group: str) -> int:
        row = self._row.get(group)
        return 0 if row is None else int(self._counts[row])

    def _new_row(self, group: str) -> int:
        if self._free:
            row = self._free.pop()
            self._ids[row] = group
        else:
            row = len(self._ids)
            if row == len(self._sums):
                self._sums = np.concatenate([self._sums, np.zeros_like(self._sums)])
                self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
            self._ids.append(group)
        self._row[group] = row
        return row

    def add(self, group: str, vectors: np.ndarray) -> None:
        """Add member embeddings (N, dim) to ``group`` (created if new)."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        with self._lock:
            row = self._row.get(group)
            if row is None:
                row = self._new_row(group)
            self._sums[row] += vectors.sum(axis=0)
            self._counts[row] += len(vectors)

    def remove(self, group: str, vectors: np.ndarray) -> None:
        """Take member embeddings out of ``group``; an emptied group disappears."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        with self._lock:
            row = self._row.get(group)
            if row is None:
                return
            self._counts[row] -= len(vectors)
            self._sums[row] -= vectors.sum(axis=0)
            if self._counts[row] <= 0:
                self._drop(group, row)

    def drop(self, group: str) -> None:
        with self._lock:
            row = self._row.get(group)
            if row is not None:
                self._drop(group, row)

    def _drop(self, group: str, row: int) -> None:
        del self._row[group]
        self._ids[row] = None
        self._sums[row] = 0
        self._counts[row] = 0
        self._free.append(row)

    def merge(self, into: str, other: str) -> None:
        with self._lock:
            a, b = self._row.get(into), self._row.get(other)
            if b is None or a == b:
                return
            if a is None:  # ``into`` has no faces of this model (not re-embedded yet): ``other``'s become its
                del self._row[other]
                self._row[into] = b
                self._ids[b] = into
                return
            self._sums[a] += self._sums[b]
            self._counts[a] += self._counts[b]
            self._drop(other, b)

    def _scores(self, vector: np.ndarray) -> np.ndarray:
        """Average-linkage similarity per row (-inf for freed rows); caller holds the lock."""
        used = len(self._ids)
        dots = self._sums[:used] @ np.asarray(vector, np.float32)
        counts = self._counts[:used]
        return np.where(counts > 0, dots / np.maximum(counts, 1), -np.inf)

    def similarities(self, vector: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Every group's average-linkage similarity to one normalised vector."""
        with self._lock:
            scores = self._scores(vector)
            rows = np.flatnonzero(np.isfinite(scores))
            # Finite scores are rows in use, whose ids are set.
            return cast("list[str]", [self._ids[r] for r in rows]), scores[rows]

    def place(self, vector: np.ndarray, threshold: float) -> Placement:
        with self._lock:
            if not self._row:
                return Placement(None, -1.0)
            scores = self._scores(vector)
            best = int(np.argmax(scores))
            similarity, group = float(scores[best]), self._ids[best]
        return Placement(group if similarity >= threshold else None, similarity)

    def close_pairs(self, threshold: float) -> list[tuple[str, str, float]]:
        """Pairs of groups whose average-linkage similarity is at least ``threshold``, closest first."""
        with self._lock:
            rows = np.asarray(list(self._row.values()))
            if len(rows) < 2:
                return []
            means = self._sums[rows] / self._counts[rows][:, None]
            ids = [self._ids[r] for r in rows]
        pairs: list[tuple[str, str, float]] = []
        for start in range(0, len(rows), 1024):  # blocks keep the similarity matrix small
            block = means[start:start + 1024] @ means.T
            for i, j in zip(*np.nonzero(block >= threshold)):
                a = start + int(i)
                if a < int(j):
                    pairs.append((ids[a], ids[int(j)], float(block[i, j])))
        pairs.sort(key=lambda p: -p[2])
        return pairs
