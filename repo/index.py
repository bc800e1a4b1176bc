"""In-memory exact search over one gallery's embeddings.

A growable float32 matrix of L2-normalised rows; cosine similarity is one
matrix-vector product. Subjects rank by their best face.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ("Match", "GalleryIndex")


@dataclass(slots=True, frozen=True)
class Match:
    subject_pk: str
    face_id: str
    similarity: float


class GalleryIndex:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._matrix = np.zeros((capacity, dim), np.float32)
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
        with self._lock:
            n = len(self._face_ids)
            need = n + len(face_ids)
            if need > len(self._matrix):
                grown = np.zeros((max(need, 2 * len(self._matrix)), self.dim), np.float32)
                grown[:n] = self._matrix[:n]
                self._matrix = grown
            self._matrix[n:need] = vectors
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
        with self._lock:
            n = len(self._face_ids)
            if n == 0 or k <= 0:
                return []
            scores = self._matrix[:n] @ np.asarray(query, np.float32)
            take = min(n, max(64, 16 * k))
            while True:
                top = np.argpartition(-scores, take - 1)[:take] if take < n else np.arange(n)
                top = top[np.argsort(-scores[top])]
                best: dict[str, Match] = {}
                for row in top:
                    subject = self._subjects[row]
                    if subject not in best:
                        best[subject] = Match(subject, self._face_ids[row], float(scores[row]))
                        if len(best) == k:
                            return list(best.values())
                if take >= n:
                    return list(best.values())
                take = min(n, take * 4)  # many faces of few subjects: look deeper
