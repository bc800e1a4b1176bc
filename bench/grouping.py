#!/usr/bin/env python3
"""Face grouping quality and speed on LFW View 1's 4,992 images.

Embeds every image's central face (cached per model in the temp folder), then
groups them one at a time in a seeded random order, as faces arrive from
cameras, with the average-linkage rule of grouping/clusters.py at each
threshold of ``--thresholds`` (plus the refinement pass at ``--merge``), and
reports against the true identities: pairwise precision and recall, BCubed
precision, recall and F. ``--seeds`` orders are averaged.

Speed: the median time to place one new face into a grouping of 10,000
faces (the LFW faces plus synthetic normalised vectors, each its own group at
worst), through GroupingService.add_face, database write included (SQLite).

Last line: ``grouping bcubed_f=<...> pair_precision=<...> place_ms=<...>`` at the
configured threshold (config.yaml grouping.threshold).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import embed_lfw, make_analyzer, make_config, pct

from facewatch.config import FacewatchConfig
from facewatch.repo_setup import build_repo
from grouping.clusters import GroupIndex
from grouping.service import GroupingOptions, GroupingService
from grouping.store import GroupStore, NewFace
from repo.events import NullPublisher
from vision.analyzer import FaceAnalyzer

# Compared by default, besides the configured grouping.threshold (which the last line reports on).
THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50)


def scores(assigned: list[int], labels: np.ndarray) -> dict[str, float]:
    clusters: dict[int, list[int]] = {}
    for item, group in enumerate(assigned):
        clusters.setdefault(group, []).append(item)
    per_label = Counter(labels.tolist())
    same_cluster = correct = 0.0
    bcubed_p = bcubed_r = 0.0
    for members in clusters.values():
        inside = Counter(labels[i] for i in members)
        size = len(members)
        same_cluster += size * (size - 1) / 2
        for label, k in inside.items():
            correct += k * (k - 1) / 2
            bcubed_p += k * k / size
            bcubed_r += k * k / per_label[label]
    true_pairs = sum(k * (k - 1) / 2 for k in per_label.values())
    p, r = bcubed_p / len(labels), bcubed_r / len(labels)
    return {"pair_precision": correct / same_cluster if same_cluster else 1.0, "pair_recall": correct / true_pairs,
            "bcubed_p": p, "bcubed_r": r, "bcubed_f": 2 * p * r / (p + r), "groups": len(clusters)}


def group_incrementally(vectors: np.ndarray, order: np.ndarray, threshold: float, merge: float | None) -> list[int]:
    index = GroupIndex(vectors.shape[1])
    assigned = [0] * len(vectors)
    members: dict[str, list[int]] = {}
    for item in order:
        placement = index.place(vectors[item], threshold)
        group = placement.group or f"g{len(members)}"
        index.add(group, vectors[item][None, :])
        members.setdefault(group, []).append(int(item))
    if merge is not None:
        for into, other, _ in index.close_pairs(merge):
            if into in index and other in index:
                index.merge(into, other)
                members[into] += members.pop(other)
    for number, items in enumerate(members.values()):
        for item in items:
            assigned[item] = number
    return assigned


async def placement_ms(cfg: FacewatchConfig, analyzer: FaceAnalyzer, vectors: np.ndarray, total: int,
                       samples: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(None, data_dir=tmp)
        parts = build_repo(cfg, analyzer, NullPublisher())
        service = GroupingService(GroupStore(parts.store), parts.repo, NullPublisher(),
                                  GroupingOptions(cfg.grouping.threshold, cfg.grouping.merge_threshold))
        rng = np.random.default_rng(7)
        synthetic = rng.standard_normal((max(0, total - len(vectors)), vectors.shape[1])).astype(np.float32)
        synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
        bulk = np.concatenate([vectors, synthetic])[:total]
        model = analyzer.embedder.model_id
        tenant = parts.store.create_tenant("bench")
        for vector in bulk:
            await service.add_face(tenant, NewFace(vector, model, "upload", time.time(), 1.0))
        times = []
        for vector in vectors[rng.choice(len(vectors), samples, replace=False)]:
            started = time.perf_counter()
            await service.add_face(tenant, NewFace(vector, model, "upload", time.time(), 1.0))
            times.append((time.perf_counter() - started) * 1000)
        parts.store.close()
        return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default=None,
                        help=f"comma-separated (default: {','.join(f'{t:.2f}' for t in THRESHOLDS)} "
                             "and the configured grouping.threshold)")
    parser.add_argument("--merge", type=float, default=None, help="refinement threshold (default: config)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--faces", type=int, default=10_000, help="grouping size for the placement timing")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    cfg = make_config(None)
    analyzer = make_analyzer(cfg)
    vectors, labels = embed_lfw(analyzer)
    merge = cfg.grouping.merge_threshold if args.merge is None else args.merge
    print(f"{len(vectors)} faces of {len(set(labels.tolist()))} people; {args.seeds} random orders each")
    chosen: dict[str, float] = {}
    if args.thresholds:
        thresholds = [float(t) for t in args.thresholds.split(",")]
    else:
        thresholds = sorted({*THRESHOLDS, cfg.grouping.threshold})
    for threshold in thresholds:
        for label, merge_at in (("no refinement", None), (f"refined at {merge:.2f}", merge)):
            runs = [scores(group_incrementally(vectors, np.random.default_rng(seed).permutation(len(vectors)),
                                               threshold, merge_at), labels) for seed in range(args.seeds)]
            mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            print(f"  threshold {threshold:.2f} {label:<16} pair P {mean['pair_precision']:.4f} "
                  f"R {mean['pair_recall']:.4f}  BCubed P {mean['bcubed_p']:.4f} R {mean['bcubed_r']:.4f} "
                  f"F {mean['bcubed_f']:.4f}  groups {mean['groups']:.0f}", flush=True)
            if abs(threshold - cfg.grouping.threshold) < 1e-9 and merge_at is not None:
                chosen = mean
    times = asyncio.run(placement_ms(cfg, analyzer, vectors, args.faces, args.samples))
    print(f"place one face into {args.faces:,} grouped faces (service, SQLite write included): "
          f"median {pct(times, 50):.2f} ms, p95 {pct(times, 95):.2f} ms")
    if not chosen:
        print("(the configured threshold was not among --thresholds)")
        return 1
    print(f"grouping bcubed_f={chosen['bcubed_f']:.4f} pair_precision={chosen['pair_precision']:.4f} "
          f"place_ms={pct(times, 50):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
