"""The sightings' search index: exact and prescan agree, time partitions narrow, rows come and go."""

from __future__ import annotations

import numpy as np

from repo.index import SearchOptions
from sightings.index import IndexOptions, SightingIndex

DAY = 86400.0


def unit(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def filled(exact_max: int, n: int = 3000, days: int = 10) -> tuple[SightingIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors = unit(rng, n)
    times = np.sort(rng.uniform(0, days * DAY, n))
    index = SightingIndex(64, IndexOptions(SearchOptions(exact_max, 0.2, 64), DAY))
    index.add("t", [f"s{i}" for i in range(n)], vectors, times.tolist(), [f"cam{i % 3}" for i in range(n)], seq=n)
    return index, vectors, times


def test_exact_search_ranks_by_similarity_and_filters_by_time_and_camera() -> None:
    index, vectors, times = filled(exact_max=10**6)
    probe = vectors[1234]
    hits = index.search("t", probe, 5)
    assert hits[0].sighting_id == "s1234" and abs(hits[0].similarity - 1.0) < 1e-5
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    start, end = times[1234] - 3600, times[1234] + 3600
    narrowed = index.search("t", probe, 50, start=start, end=end)
    assert narrowed[0].sighting_id == "s1234" and all(start <= h.seen_at <= end for h in narrowed)
    assert index.search("t", probe, 5, start=times[1234] + 1) == [] or \
        index.search("t", probe, 5, start=times[1234] + 1)[0].sighting_id != "s1234"
    assert index.search("t", probe, 5, cameras=["cam0"])[0].sighting_id != "s1234"  # 1234 % 3 == 1
    assert index.search("t", probe, 5, cameras=["cam1"])[0].sighting_id == "s1234"
    assert index.search("t", probe, 5, cameras=["nowhere"]) == []
    assert all(h.similarity >= 0.3 for h in index.search("t", probe, 100, min_similarity=0.3))
    assert index.search("other tenant", probe, 5) == []


def test_the_prescan_finds_what_the_exact_scan_finds_for_a_near_duplicate() -> None:
    exact, vectors, _ = filled(exact_max=10**6)
    prescan, _, _ = filled(exact_max=100)  # 3,000 rows over 10 partitions: every search prescans
    rng = np.random.default_rng(1)
    for row in rng.integers(0, len(vectors), 20):
        probe = vectors[row] + 0.02 * unit(rng, 1)[0]
        probe /= np.linalg.norm(probe)
        assert prescan.search("t", probe, 1)[0].sighting_id == exact.search("t", probe, 1)[0].sighting_id == f"s{row}"


def test_removal_retention_and_sequence() -> None:
    index, vectors, times = filled(exact_max=10**6)
    assert index.size("t") == 3000 and index.seq("t") == 3000
    assert index.remove("t", ["s1234", "s1", "nope"]) == 2
    assert index.search("t", vectors[1234], 1)[0].sighting_id != "s1234"
    assert index.search("t", vectors[1235], 1)[0].sighting_id == "s1235"  # rows moved into holes still answer
    cutoff = 4.5 * DAY
    dropped = index.drop_before("t", cutoff)
    assert dropped == int((times < cutoff).sum()) - (1 if times[1] < cutoff else 0) - (times[1234] < cutoff)
    assert all(h.seen_at >= cutoff for h in index.search("t", vectors[2999], 3000))
    index.add("t", ["s2999"], vectors[2999:3000], [times[2999]], ["cam2"], seq=2990)  # known: skipped
    assert index.size("t") == 3000 - 2 - dropped and index.seq("t") == 3000
