#!/usr/bin/env python3
"""Verification accuracy on labelled pairs of real faces.

Every photo's face is the one the API takes (the most prominent; bench.common.probe_face).
LFW View 1: threshold chosen on pairsDevTrain (best accuracy), reported on
pairsDevTest; the recognition presets (rates: a FAR per pair for verify) are
checked on DevTest at the threshold verify uses for them, read from the
shipped calibration (repo/calibrations/). deepface master.csv and the harder pivot set:
ROC AUC and TAR at fixed FAR. ``--variants base,flip`` measures mirror
averaging against the baseline in the same run.

Last line: ``verify_pairs lfw_view1_accuracy=<..> deepface_pivot_auc=<..>``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, add_config_arg, make_analyzer, probe_face, make_config

from repo.calibration import shipped_calibration
from vision.analyzer import FaceAnalyzer
from vision.images import decode_image

Pair = tuple[Path, Path, bool]


@dataclass
class Scores:
    similarity: np.ndarray
    same: np.ndarray


def lfw_pairs(name: str) -> tuple[list[Pair], int]:
    root = DATA / "pairs" / "lfw-view1"
    pairs, missing = [], 0
    for line in (root / name).read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            a, b, same = (parts[0], int(parts[1])), (parts[0], int(parts[2])), True
        elif len(parts) == 4:
            a, b, same = (parts[0], int(parts[1])), (parts[2], int(parts[3])), False
        else:
            continue
        files = [root / "images" / person / f"{person}_{n:04d}.jpg" for person, n in (a, b)]
        if all(f.is_file() for f in files):
            pairs.append((files[0], files[1], same))
        else:
            missing += 1
    return pairs, missing


def deepface_pairs(name: str) -> list[Pair]:
    root = DATA / "pairs" / "deepface"
    pairs = []
    with (root / name).open() as fh:
        for row in csv.DictReader(fh):
            row = {k.lower(): v for k, v in row.items()}
            # The pivot file names images by their path in the deepface repository.
            files = [root / Path(row[k]).name for k in ("file_x", "file_y")]
            pairs.append((files[0], files[1], row["decision"].strip().lower() == "yes"))
    return pairs


class Embeddings:
    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        self.cache: dict[Path, np.ndarray] = {}
        self.missed: list[Path] = []

    def __call__(self, path: Path) -> np.ndarray:
        if path not in self.cache:
            image = decode_image(path.read_bytes())
            face = probe_face(self.analyzer, image)
            if face is None or face.embedding is None:
                # Count it and use a zero vector: similarity 0 to everything.
                self.missed.append(path)
                self.cache[path] = np.zeros(self.analyzer.embedder.dim, np.float32)
            else:
                self.cache[path] = face.embedding
        return self.cache[path]


def score(pairs: list[Pair], embed: Embeddings) -> Scores:
    sims = np.array([float(embed(a) @ embed(b)) for a, b, _ in pairs])
    return Scores(sims, np.array([same for _, _, same in pairs]))


def roc_auc(s: Scores) -> float:
    """Probability that a same pair outscores a different pair (ties count half)."""
    pos, neg = s.similarity[s.same], s.similarity[~s.same]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def best_threshold(s: Scores) -> tuple[float, float]:
    candidates = np.unique(s.similarity)
    accuracy = [float(((s.similarity >= t) == s.same).mean()) for t in candidates]
    i = int(np.argmax(accuracy))
    # Midway to the next candidate generalises better than the exact score.
    t = candidates[i] if i == 0 else (candidates[i] + candidates[i - 1]) / 2
    return float(t), accuracy[i]


def threshold_at_far(s: Scores, far: float) -> tuple[float, bool]:
    """Lowest threshold whose false accept rate is <= ``far``; False if not measurable."""
    neg = np.sort(s.similarity[~s.same])[::-1]
    allowed = int(np.floor(far * len(neg)))
    measurable = allowed >= 1
    t = neg[allowed] + 1e-6 if allowed < len(neg) else neg[-1]
    return float(t), measurable


def tar_at_far(s: Scores, far: float) -> tuple[float, bool]:
    t, measurable = threshold_at_far(s, far)
    return float((s.similarity[s.same] >= t).mean()), measurable


def worst(pairs: list[Pair], s: Scores, n: int = 3) -> str:
    same_low = np.argsort(np.where(s.same, s.similarity, np.inf))[:n]
    diff_high = np.argsort(np.where(~s.same, -s.similarity, np.inf))[:n]
    fmt = lambda i: f"{pairs[i][0].name}~{pairs[i][1].name}={s.similarity[i]:.2f}"  # noqa: E731
    return f"lowest same: {', '.join(map(fmt, same_low))}; highest different: {', '.join(map(fmt, diff_high))}"


def report(name: str, s: Scores) -> float:
    auc = roc_auc(s)
    t, acc = best_threshold(s)
    tar2, m2 = tar_at_far(s, 1e-2)
    tar3, m3 = tar_at_far(s, 1e-3)

    def note(measurable: bool) -> str:
        return "" if measurable else "*"

    print(f"  {name:<28} pairs={len(s.same):>5} auc={auc:.4f} best_acc={acc:.4f}@{t:.3f} "
          f"TAR@FAR1e-2={tar2:.4f}{note(m2)} TAR@FAR1e-3={tar3:.4f}{note(m3)}")
    return auc


def run_variant(label: str, analyzer: FaceAnalyzer) -> dict[str, float]:
    embed = Embeddings(analyzer)
    started = time.perf_counter()
    print(f"variant {label}")
    results: dict[str, float] = {}
    for csv_name, key in (("master.csv", "deepface_master_auc"), ("face-recognition-pivot.csv", "deepface_pivot_auc")):
        pairs = deepface_pairs(csv_name)
        scores = score(pairs, embed)
        results[key] = report(f"deepface/{csv_name}", scores)
        print(f"    {worst(pairs, scores)}")
    train_pairs, train_missing = lfw_pairs("pairsDevTrain.txt")
    test_pairs, test_missing = lfw_pairs("pairsDevTest.txt")
    train, test = score(train_pairs, embed), score(test_pairs, embed)
    report("lfw-view1/pairsDevTrain", train)
    results["lfw_view1_test_auc"] = report("lfw-view1/pairsDevTest", test)
    threshold, train_acc = best_threshold(train)
    results["lfw_view1_accuracy"] = float(((test.similarity >= threshold) == test.same).mean())
    results["threshold"] = threshold
    print(f"  LFW View 1: threshold {threshold:.3f} chosen on DevTrain (train acc {train_acc:.4f}) "
          f"-> DevTest accuracy {results['lfw_view1_accuracy']:.4f}")
    calibration = shipped_calibration(embed.analyzer.embedder.model_id)
    for preset, far in make_config(None).recognition.rates.items():
        if calibration is None:
            break
        t = calibration.threshold(far, 1.0)  # what verify uses for a good pair at this preset
        results[f"preset_{preset}"] = t
        test_far = float((test.similarity[~test.same] >= t).mean())
        test_tar = float((test.similarity[test.same] >= t).mean())
        print(f"  preset {preset:<6} FAR {far:g}: calibrated threshold {t:.3f}; on DevTest FAR={test_far:.4f} "
              f"({int((test.similarity[~test.same] >= t).sum())}/{int((~test.same).sum())}) TAR={test_tar:.4f}")
    if train_missing or test_missing:
        print(f"  skipped pairs with a missing image file: DevTrain {train_missing}, DevTest {test_missing}")
    print(f"  images with no face found: {len(embed.missed)} {[p.name for p in embed.missed][:5]}")
    print(f"  time {time.perf_counter() - started:.1f}s for {len(embed.cache)} images")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--variants", default="base", help="comma-separated: base, flip")
    args = parser.parse_args()
    if not (DATA / "pairs").is_dir():
        print(f"no pair data at {DATA}", file=sys.stderr)
        return 1
    # Yaw from the landmarks: verification does not use the quality gate.
    variants = {}
    for label in args.variants.split(","):
        cfg = make_config(args.config, quality__yaw_source="landmarks",
                          models__embedder__flip=(label == "flip"))
        variants[label] = run_variant(label, make_analyzer(cfg))
    if len(variants) > 1 and "base" in variants:
        for label, res in variants.items():
            if label != "base":
                base = variants["base"]
                print(f"{label} vs base: LFW accuracy {res['lfw_view1_accuracy'] - base['lfw_view1_accuracy']:+.4f}, "
                      f"pivot AUC {res['deepface_pivot_auc'] - base['deepface_pivot_auc']:+.4f}")
    first = next(iter(variants.values()))
    print(f"verify_pairs lfw_view1_accuracy={first['lfw_view1_accuracy']:.4f} "
          f"deepface_pivot_auc={first['deepface_pivot_auc']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
