"""The gallery index ranks subjects by their best face: exactly, or after a sign-code prescan on large galleries."""

from __future__ import annotations

import numpy as np

import pytest

from repo.index import GalleryIndex, SearchOptions, sign_codes


def _vectors(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


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


def _planted(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random rows and, for every tenth row, a query close to it (cosine about 0.8)."""
    x = _vectors(n, d, seed)
    noise = _vectors(n // 10, d, seed + 1)
    queries = x[::10] * 0.8 + noise * 0.6
    return x, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def test_code_prescan_with_every_row_as_candidate_equals_the_exact_search_after_removals() -> None:
    # candidate_fraction 1: the prescan path must give exactly the full scan's answer,
    # which it only can if the codes stay aligned with the rows through growth and removals.
    x = _vectors(3000, 128, seed=5)
    subjects = [f"s{i % 300}" for i in range(3000)]
    exact = GalleryIndex(128, capacity=16)
    coded = GalleryIndex(128, capacity=16, options=SearchOptions(exact_max_faces=0, candidate_fraction=1.0))
    for index in (exact, coded):
        index.add([f"f{i}" for i in range(3000)], subjects, x)
        index.remove([f"f{i}" for i in range(0, 3000, 7)])
    for row in (1, 500, 2999):
        assert coded.search(x[row], 5) == exact.search(x[row], 5)


def test_code_prescan_finds_the_near_face_among_a_small_share_of_candidates() -> None:
    x, queries = _planted(20_000, 512, seed=7)
    index = GalleryIndex(512, options=SearchOptions(exact_max_faces=1000, candidate_fraction=0.01, min_candidates=64))
    index.add([f"f{i}" for i in range(len(x))], [f"s{i}" for i in range(len(x))], x)
    found = [index.search(q, 1)[0].face_id for q in queries]
    assert found == [f"f{i}" for i in range(0, len(x), 10)]
    # scores are exact: the similarity reported is the float32 dot product
    assert index.search(queries[0], 1)[0].similarity == pytest.approx(float(x[0] @ queries[0]), abs=1e-5)


def test_sign_codes_pack_one_bit_per_dimension() -> None:
    v = np.array([[0.5, -0.1, 0.0, 0.2, -0.3, 0.1, 0.1, -0.9, 0.4]], np.float32)
    assert sign_codes(v).tolist() == [[0b10010110, 0b10000000]]
