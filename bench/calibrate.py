#!/usr/bin/env python3
"""Calibrate the decision rule (repo/decision.py) for the embedding model in use.

Impostor pairs: every probe (LFW View 1 faces at original quality and
degraded as cameras deliver them; bench/faceset.py) against every original
face of another person: about 75 million pairs. Their similarity quantiles,
per probe-quality band, are what a threshold for a given FAR is read from.
Each quantile is printed with a 95 % interval (from the binomial spread of the
count of impostors beyond it). ``--write`` stores the calibration where
facewatch finds it for this model (repo/calibrations/<model>.json).

Also prints the model's reference embedding norm (median over the originals:
quality.reference_norm in config.yaml).

Last line: ``calibrate pairs=<n> far1e-3=<threshold, best band> far1e-6=<...>``.
"""

from __future__ import annotations

import argparse
import sys
import math
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import ROOT, add_config_arg, make_analyzer, make_config  # noqa: E402
from bench.faceset import FaceSet, build_faceset  # noqa: E402

from repo.calibration import MIN_EXCEEDANCES, Calibration, fit_calibration

QUALITY_EDGES = (0.0, 0.5, 0.7, 0.9, 1.0001)
LOG10_FAR = tuple(-x / 2 for x in range(2, 15))  # 1e-1 ... 1e-7, half decades


def impostor_scores_by_band(probes: FaceSet, gallery: FaceSet, edges: tuple[float, ...]) -> list[np.ndarray]:
    """Similarity of every probe to every gallery face of another person, split by the probe's quality band."""
    bands: list[list[np.ndarray]] = [[] for _ in range(len(edges) - 1)]
    for start in range(0, len(probes), 2048):
        chunk = slice(start, start + 2048)
        scores = probes.embeddings[chunk] @ gallery.embeddings.T
        other = probes.person[chunk, None] != gallery.person[None, :]
        quality = probes.quality[chunk]
        for b in range(len(edges) - 1):
            rows = (quality >= edges[b]) & (quality < edges[b + 1])
            bands[b].append(scores[rows][other[rows]])
    return [np.concatenate(parts) if parts else np.zeros(0, np.float32) for parts in bands]


def quantile_interval(scores: np.ndarray, far: float) -> tuple[float, float, float] | None:
    """(threshold, low, high): the k-th highest score (as fit_calibration takes it) and a 95 % interval
    from the binomial spread of that count, or None if too few."""
    n = len(scores)
    k = int(math.floor(far * n))
    if k < MIN_EXCEEDANCES:
        return None
    spread = int(math.ceil(1.96 * math.sqrt(k)))
    ordered = np.sort(np.partition(scores, n - k - spread - 2)[n - k - spread - 2:])[::-1]
    at, low, high = k - 1, min(len(ordered) - 1, k - 1 + spread), max(0, k - 1 - spread)
    return float(ordered[at]), float(ordered[low]), float(ordered[high])


def calibrate(faces: FaceSet, model_id: str, source: str, verbose: bool = True) -> tuple[Calibration, int]:
    gallery = faces.select(faces.variant == 0)
    bands = impostor_scores_by_band(faces, gallery, QUALITY_EDGES)
    if verbose:
        for b, scores in enumerate(bands):
            print(f"  band quality [{QUALITY_EDGES[b]:.2f}, {min(QUALITY_EDGES[b + 1], 1.0):.2f}): "
                  f"{len(scores):,} impostor pairs")
            for x in (-2.0, -3.0, -4.0, -5.0, -6.0):
                found = quantile_interval(scores, 10.0 ** x)
                text = "extrapolated" if found is None else f"{found[0]:.4f} (95 % {found[1]:.4f}-{found[2]:.4f})"
                print(f"    FAR 1e{int(x)}: {text}")
    calibration = fit_calibration(model_id, bands, QUALITY_EDGES, LOG10_FAR, source)
    return calibration, sum(len(b) for b in bands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--variants", type=int, default=2, help="degraded copies of each image")
    parser.add_argument("--write", action="store_true", help="store it in repo/calibrations/ for this model")
    args = parser.parse_args()
    analyzer = make_analyzer(make_config(args.config))
    faces = build_faceset(analyzer, variants=args.variants)
    model_id = analyzer.embedder.model_id
    print(f"faces: {len(faces)} ({int((faces.variant == 0).sum())} originals), {faces.missed} not found")
    print(f"reference embedding norm (median over originals): {float(np.median(faces.norms[faces.variant == 0])):.3f}")
    source = (f"LFW View 1, {int((faces.variant == 0).sum())} faces of {len(set(faces.person.tolist()))} people, "
              f"probes original + {args.variants} degraded copies each (24-80 px, JPEG 30-70, half motion-blurred), "
              "against every original face of another person (bench/calibrate.py)")
    calibration, pairs = calibrate(faces, model_id, source)
    best = len(QUALITY_EDGES) - 2
    print("calibration (threshold per band, FAR 1e-1 ... 1e-7 by half decades):")
    for b, row in enumerate(calibration.thresholds):
        print(f"  [{QUALITY_EDGES[b]:.2f}+): " + " ".join(f"{v:.3f}" for v in row))
    if args.write:
        path = ROOT / "repo" / "calibrations" / f"{model_id.replace('/', '_')}.json"
        calibration.save(path)
        print(f"written: {path.relative_to(ROOT)}")
    print(f"calibrate pairs={pairs} far1e-3={calibration.threshold(1e-3, 1.0):.4f} "
          f"far1e-6={calibration.threshold(1e-6, 1.0):.4f} band={best}")


if __name__ == "__main__":
    main()
