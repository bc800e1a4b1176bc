"""In-memory search over one gallery's embeddings.

A growable float32 matrix of L2-normalised rows; cosine similarity is one
matrix-vector product. Subjects rank by their best face.

Up to ``SearchOptions.exact_max_faces`` every row is scored. Beyond that a full
scan reads 2 GB per query at a million faces (65-90 ms on a 2-core machine), so
each row also keeps a 512-bit sign code (64 bytes): a query first takes the
rows nearest by Hamming distance over those codes (faiss, about 4 ms for a
million codes) and only those are scored exactly. The recall of that cut was
measured on real faces (bench/repo.py, docs/benchmarks.md, "Repo benchmark"): keeping the
nearest 1 % of faces kept every genuine best match of LFW View 1.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from types import ModuleType

import numpy as np

__all__ = ("Match", "GalleryIndex", "NegativeIndex", "SearchOptions", "sign_codes", "nearest_codes", "prescan_size")


@dataclass(slots=True, frozen=True)
class Match:
    subject_pk: str
    face_id: str
    similarity: float


@dataclass(slots=True, frozen=True)
class SearchOptions:
    exact_max_faces: int = 100_000  # galleries up to this size are scanned exactly
    candidate_fraction: float = 0.01  # above it, this share of the faces is re-scored exactly...
    min_candidates: int = 1024  # ...but never fewer rows than this


@functools.cache
def _faiss() -> ModuleType:
    import faiss

    # One query is one short call; faiss's OpenMP threads would then spin-wait
    # on the other core and slow the exact re-scoring that follows (measured:
    # p95 75 ms instead of 4 ms on 2 cores). Queries run in parallel on the
    # callers' threads instead.
    faiss.omp_set_num_threads(1)
    return faiss


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D / 8)) uint8: one bit per dimension, set where positive."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def prescan_size(options: SearchOptions, n: int) -> int:
    """How many of ``n`` rows the sign-code prescan keeps for exact scoring."""
    return min(n, max(options.min_candidates, int(np.ceil(options.candidate_fraction * n))))


def nearest_codes(query: np.ndarray, codes: np.ndarray, take: int) -> np.ndarray:
    """Positions in ``codes`` of the ``take`` codes nearest to ``query``'s sign code by Hamming distance,
    ascending (in memory order: the gather that follows reads forward)."""
    _, found = _faiss().knn_hamming(sign_codes(np.asarray(query).reshape(1, -1)), codes, take)
    return np.sort(found[0])


class GalleryIndex:
    def __init__(self, dim: int, capacity: int = 1024, options: SearchOptions = SearchOptions()) -> None:
        self.dim = dim
        self.options = options
        self._matrix = np.zeros((capacity, dim), np.float32)
        self._codes = np.zeros((capacity, (dim + 7) // 8), np.uint8)
        self._face_ids: list[str] = []
        self._subjects: list[str] = []
        self._row: dict[str, int] = {}
        # Searches read while the API thread writes: one lock, held briefly.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._face_ids)

    def contains(self, face_id: str) -> bool:
        with self._lock:
            return face_id in self._row

    def add(self, face_ids: list[str], subject_pks: list[str], embeddings: np.ndarray) -> None:
        if len(face_ids) == 0:
            return
        vectors = np.asarray(embeddings, np.float32).reshape(len(face_ids), self.dim)
        codes = sign_codes(vectors)
        with self._lock:
            n = len(self._face_ids)
            need = n + len(face_ids)
            if need > len(self._matrix):
                size = max(need, 2 * len(self._matrix))
                self._matrix = _grown(self._matrix, n, size)
                self._codes = _grown(self._codes, n, size)
            self._matrix[n:need] = vectors
            self._codes[n:need] = codes
            for offset, (face_id, subject) in enumerate(zip(face_ids, subject_pks)):
                self._row[face_id] = n + offset
                self._face_ids.append(face_id)
                self._subjects.append(subject)

    def remove(self, face_ids: list[str]) -> None:
        with self._lock:
            for face_id in face_ids:
                row = self._row.pop(face_id, None)
                if row is None:
                    continue
                last = len(self._face_ids) - 1
                if row != last:  # move the last row into the hole
                    self._matrix[row] = self._matrix[last]
                    self._codes[row] = self._codes[last]
                    self._face_ids[row] = self._face_ids[last]
                    self._subjects[row] = self._subjects[last]
                    self._row[self._face_ids[row]] = row
                self._face_ids.pop()
                self._subjects.pop()

    def reassign(self, face_ids: list[str], subject_pk: str) -> None:
        with self._lock:
            for face_id in face_ids:
                row = self._row.get(face_id)
                if row is not None:
                    self._subjects[row] = subject_pk

    def search(self, query: np.ndarray, k: int) -> list[Match]:
        """The ``k`` best subjects for one normalised query vector, best first."""
        q = np.asarray(query, np.float32).reshape(self.dim)
        with self._lock:
            n = len(self._face_ids)
            if n == 0 or k <= 0:
                return []
            if n <= self.options.exact_max_faces:
                rows = np.arange(n)
                scores = self._matrix[:n] @ q
            else:
                rows = self._nearest_codes(q, n)
                scores = self._matrix[rows] @ q
            return self._best_subjects(rows, scores, k)

    def _nearest_codes(self, q: np.ndarray, n: int) -> np.ndarray:
        """Row numbers of the faces nearest to ``q`` by sign-code Hamming distance, ascending."""
        return nearest_codes(q, self._codes[:n], prescan_size(self.options, n))

    def _best_subjects(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Match]:
        n = len(rows)
        take = min(n, max(64, 16 * k))
        while True:
            top = np.argpartition(-scores, take - 1)[:take] if take < n else np.arange(n)
            top = top[np.argsort(-scores[top])]
            best: dict[str, Match] = {}
            for position in top:
                row = rows[position]
                subject = self._subjects[row]
                if subject not in best:
                    best[subject] = Match(subject, self._face_ids[row], float(scores[position]))
                    if len(best) == k:
                        return list(best.values())
            if take >= n:
                return list(best.values())
            take = min(n, take * 4)  # many faces of few subjects: look deeper


def _grown(array: np.ndarray, used: int, rows: int) -> np.ndarray:
    grown = np.zeros((rows, *array.shape[1:]), array.dtype)
    grown[:used] = array[:used]
    return grown


class NegativeIndex:
    """One gallery's negatives ("this is not X"), by subject: few, so a dict of small matrices."""

    def __init__(self) -> None:
        self._by_subject: dict[str, dict[str, np.ndarray]] = {}  # subject pk -> {negative id: vector}
        self._subject_of: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._subject_of)

    def add(self, negative_id: str, subject_pk: str, vector: np.ndarray) -> None:
        with self._lock:
            self._remove(negative_id)
            self._by_subject.setdefault(subject_pk, {})[negative_id] = np.asarray(vector, np.float32).reshape(-1)
            self._subject_of[negative_id] = subject_pk

    def remove(self, negative_ids: list[str]) -> None:
        with self._lock:
            for negative_id in negative_ids:
                self._remove(negative_id)

    def _remove(self, negative_id: str) -> None:
        subject = self._subject_of.pop(negative_id, None)
        if subject is not None:
            vectors = self._by_subject[subject]
            vectors.pop(negative_id, None)
            if not vectors:
                del self._by_subject[subject]

    def remove_subject(self, subject_pk: str) -> None:
        with self._lock:
            for negative_id in list(self._by_subject.get(subject_pk, {})):
                self._remove(negative_id)

    def reassign(self, from_pk: str, to_pk: str) -> None:
        """A merge: the negatives of ``from_pk`` are ``to_pk``'s now."""
        with self._lock:
            moved = self._by_subject.pop(from_pk, {})
            self._by_subject.setdefault(to_pk, {}).update(moved)
            for negative_id in moved:
                self._subject_of[negative_id] = to_pk
            if not self._by_subject[to_pk]:
                del self._by_subject[to_pk]

    def nearest(self, subject_pk: str, query: np.ndarray) -> float | None:
        """The highest similarity of ``query`` to the subject's negatives, None if it has none."""
        with self._lock:
            vectors = self._by_subject.get(subject_pk)
            if not vectors:
                return None
            matrix = np.stack(list(vectors.values()))
        return float((matrix @ np.asarray(query, np.float32).reshape(-1)).max())
