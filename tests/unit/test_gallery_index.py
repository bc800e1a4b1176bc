"""The gallery index ranks subjects by their best face, exactly."""

from __future__ import annotations

import numpy as np

from repo.index import GalleryIndex


def _vectors(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(x: np.ndarray, subjects: list[str], q: np.ndarray, k: int) -> list[tuple[str, float]]:
    scores = x @ q
    best: dict[str, float] = {}
    for row in np.argsort(-scores):
        best.setdefault(subjects[row], float(scores[row]))
        if len(best) == k:
            break
    return list(best.items())


def test_subjects_rank_by_their_best_face_growth_removal_and_reassign() -> None:
    x = _vectors(1000)
    subjects = [f"s{i % 50}" for i in range(1000)]
    index = GalleryIndex(64, capacity=8)  # grows as it goes
    index.add([f"f{i}" for i in range(1000)], subjects, x)
    for row in (10, 500, 999):
        got = index.search(x[row], 5)
        assert [(m.subject_pk, round(m.similarity, 5)) for m in got] == [
            (s, round(v, 5)) for s, v in _brute_force(x, subjects, x[row], 5)]
    assert index.search(x[10], 1)[0].face_id == "f10"
    index.remove(["f10", "f999"])
    assert index.search(x[10], 1)[0].face_id != "f10"
    assert len(index) == 998
    index.reassign(["f11"], "moved")
    assert index.search(x[11], 1)[0].subject_pk == "moved"


def test_many_faces_of_few_subjects_still_yield_k_subjects() -> None:
    x = _vectors(2000, seed=3)
    subjects = ["crowd"] * 1990 + [f"s{i}" for i in range(10)]
    index = GalleryIndex(64)
    index.add([f"f{i}" for i in range(2000)], subjects, x)
    got = index.search(x[0], 5)
    assert len(got) == 5 and got[0].subject_pk == "crowd"
    assert [(m.subject_pk, round(m.similarity, 5)) for m in got] == [
        (s, round(v, 5)) for s, v in _brute_force(x, subjects, x[0], 5)]
