"""Average-linkage placement and merging in grouping/clusters.py."""

from __future__ import annotations

import numpy as np

from grouping.clusters import GroupIndex


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def test_a_face_joins_the_group_it_is_closest_to_on_average() -> None:
    index = GroupIndex(3)
    assert index.place(unit(1, 0, 0), 0.5).group is None  # nothing yet: a new group
    index.add("a", np.stack([unit(1, 0, 0), unit(1, 0.2, 0)]))
    index.add("b", unit(0, 1, 0)[None, :])
    placed = index.place(unit(1, 0.1, 0), 0.5)
    assert placed.group == "a" and placed.similarity > 0.95
    far = index.place(unit(0, 0, 1), 0.5)
    assert far.group is None and far.similarity < 0.5


def test_average_linkage_equals_the_mean_similarity_to_members() -> None:
    rng = np.random.default_rng(0)
    members = rng.standard_normal((7, 16)).astype(np.float32)
    members /= np.linalg.norm(members, axis=1, keepdims=True)
    probe = members[0] * 0.5 + members[1] * 0.5
    probe /= np.linalg.norm(probe)
    index = GroupIndex(16)
    index.add("g", members)
    _, scores = index.similarities(probe)
    assert np.isclose(scores[0], float(np.mean(members @ probe)), atol=1e-6)


def test_merge_remove_and_drop_keep_sizes_right() -> None:
    index = GroupIndex(3)
    index.add("a", unit(1, 0, 0)[None, :])
    index.add("b", np.stack([unit(1, 0.1, 0), unit(1, 0, 0.1)]))
    index.add("c", unit(0, 1, 0)[None, :])
    assert [(a, b) for a, b, _ in index.close_pairs(0.9)] == [("a", "b")]
    index.merge("a", "b")
    assert index.size("a") == 3 and "b" not in index and len(index) == 2
    index.remove("a", unit(1, 0, 0)[None, :])
    assert index.size("a") == 2
    index.remove("c", unit(0, 1, 0)[None, :])
    assert "c" not in index  # emptied: gone
    index.add("d", unit(0, 0, 1)[None, :])  # reuses the freed row
    assert index.place(unit(0, 0, 1), 0.9).group == "d" and len(index) == 2
    index.drop("d")
    assert index.place(unit(0, 0, 1), 0.9).group is None


def test_merging_into_a_group_absent_from_the_index_moves_the_other_under_its_name() -> None:
    # After a model change a group may have no face of the current model yet (not in the index);
    # merging another group into it must leave the members under the surviving group's id.
    index = GroupIndex(3)
    index.add("other", unit(1, 0, 0)[None, :])
    index.merge("kept", "other")
    assert "other" not in index and "kept" in index and index.size("kept") == 1
    assert index.place(unit(1, 0.05, 0), 0.5).group == "kept"
