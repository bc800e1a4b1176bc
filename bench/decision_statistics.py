#!/usr/bin/env python3
"""Is there a better decision statistic than the best cosine? (issue 13)

The same split, gallery (1,000 held-out subjects) and probes as
bench/openset.py. Each statistic gives each probe a best subject and a score;
its threshold is set as loose as 1 % of the held-out degraded strangers allow
(bench/openset.py's ``fnir_at_fpir``: at most 20 of 2,014 named), and FNIR is
read on the held-out degraded enrolled probes. Each is compared with the best
cosine over the same people resampled (95 % interval of the FNIR difference).
Anything fitted (the per-band calibration) is fitted on the calibration half.

Statistics:
- cosine: the subject's best face (what repo/index.py ranks by);
- mean / max+mean / template: all of a subject's enrolled faces (their mean
  similarity; its average with the best; the cosine to their normalised sum);
- z-norm / centred / gap10: the best score against the probe's own scores
  over the gallery (minus their mean, over their spread; or minus the mean of
  the next ten subjects): a per-probe normalisation that needs no extra data;
- equal-FAR bands: the calibrated threshold of the probe's own quality band,
  without fit_calibration's rule that a worse band is never more lenient
  (no margin, no gate);
- flip (``--flip``): mirror-averaged embeddings of gallery and probes alike
  (models.embedder.flip; a second face set, about 20 minutes to build once).

Last line: ``decision_statistics fnir_cosine=<> best=<name> fnir_best=<> best_minus_cosine_high=<>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.calibrate import LOG10_FAR, QUALITY_EDGES, impostor_scores_by_band  # noqa: E402
from bench.common import add_config_arg, make_analyzer, make_config  # noqa: E402
from bench.faceset import FaceSet, build_faceset  # noqa: E402
from bench.openset import (Gallery, Operating, build_gallery, by_cosine, by_rule, fnir_at_fpir,  # noqa: E402
                           paired_difference, rate, split)

from repo.calibration import Calibration, fit_calibration
from repo.decision import Policy

FPIR = 1e-2
GALLERY = 1000


def _best(score: np.ndarray) -> Operating:
    """A (P, S) score where higher means more alike: the best subject, named below minus its score."""
    named = score.argmax(axis=1)
    return Operating(named, -score[np.arange(len(score)), named].astype(np.float64))


def _per_probe(subject_scores: np.ndarray, relative: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Operating:
    best = _best(subject_scores)
    return Operating(best.named, -relative(-best.looseness, subject_scores))


def fused_statistics(faces: FaceSet, gallery: Gallery) -> dict[str, Operating]:
    probes, faces_g = faces.embeddings, gallery.embeddings
    similarity = probes @ faces_g.T  # (P, F)
    member = np.zeros((len(faces_g), len(gallery.person_of_subject)), np.float32)
    member[np.arange(len(faces_g)), gallery.subject_of_face] = 1.0
    best = gallery.subject_scores(probes)
    mean = (similarity @ member) / member.sum(axis=0)
    template = member.T @ faces_g
    template /= np.linalg.norm(template, axis=1, keepdims=True)

    def next_ten(top: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ranked = -np.partition(-scores, 11, axis=1)[:, :11]  # the best eleven, in no order
        gap: np.ndarray = top - (ranked.sum(axis=1) - top) / 10
        return gap

    return {
        "cosine": by_cosine(best),
        "mean": _best(mean),
        "max+mean": _best((best + mean) / 2),
        "template": _best(probes @ template.T),
        "z-norm": _per_probe(best, lambda top, s: (top - s.mean(axis=1)) / s.std(axis=1)),
        "centred": _per_probe(best, lambda top, s: top - s.mean(axis=1)),
        "gap10": _per_probe(best, next_ten),
    }


def band_calibration(faces: FaceSet) -> Calibration:
    """fit_calibration per quality band on its own: each band keeps its measured quantiles."""
    bands = impostor_scores_by_band(faces, faces.select(faces.variant == 0), QUALITY_EDGES)
    rows = tuple(fit_calibration("bands", [scores], (0.0, 1.0001), LOG10_FAR, "").thresholds[0] for scores in bands)
    return Calibration("bands", QUALITY_EDGES, LOG10_FAR, rows, "per band, calibration half")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--flip", action="store_true", help="also mirror-averaged embeddings (a second face set)")
    args = parser.parse_args()
    analyzer = make_analyzer(make_config(args.config))
    faces = build_faceset(analyzer, variants=2)
    calibration_people, held_out = split(faces, args.seed)
    gallery, enrolled, stranger, truth = build_gallery(faces, held_out, GALLERY, args.seed)
    degraded = faces.variant > 0
    strangers, probes = stranger & degraded, enrolled & degraded
    statistics = fused_statistics(faces, gallery)
    bands = band_calibration(faces.select(np.isin(faces.person, calibration_people)))
    statistics["equal-FAR bands"] = by_rule(gallery.subject_scores(faces.embeddings), faces.quality,
                                            Policy(rate=FPIR), bands, len(gallery.embeddings), strangers | probes)
    if args.flip:
        model_id = analyzer.embedder.model_id
        mirrored = make_analyzer(make_config(args.config, models__embedder__flip=True,
                                             models__embedder__model_id=f"{model_id}-flip"))
        flipped = build_faceset(mirrored, variants=2)
        # The same rows in both (detection does not depend on the embedder), so one split and one gallery.
        if not (np.array_equal(flipped.paths, faces.paths) and np.array_equal(flipped.variant, faces.variant)):
            raise SystemExit("the mirrored face set has other rows than the plain one")
        mirrored_gallery = build_gallery(flipped, held_out, GALLERY, args.seed)[0]
        statistics["flip (cosine)"] = by_cosine(mirrored_gallery.subject_scores(flipped.embeddings))
    print(f"held out: gallery {len(gallery.person_of_subject)} subjects ({len(gallery.embeddings)} faces), "
          f"{int(probes.sum())} degraded enrolled probes, {int(strangers.sum())} degraded strangers; "
          f"FNIR at FPIR {FPIR:g}:")
    cosine = statistics["cosine"]
    fnir = {}
    best, high_of_best = "cosine", 0.0
    for name, rule in statistics.items():
        missed, _ = fnir_at_fpir(rule, strangers, probes, truth, FPIR)
        fnir[name] = float(missed.mean())
        line = f"  {name:16s} {rate(missed)}"
        if name != "cosine":
            low, high = paired_difference(rule, cosine, strangers, probes, truth, faces.person, FPIR, args.seed)
            line += f"  minus cosine {fnir[name] - fnir['cosine']:+.4f} (95 % {low:+.4f} to {high:+.4f})"
            if fnir[name] < fnir[best]:
                best, high_of_best = name, high
        print(line)
    print(f"  the best subject is not the right one (no score can do better): "
          f"{rate((cosine.named != truth)[probes])}")
    print(f"decision_statistics fnir_cosine={fnir['cosine']:.4f} best={best.replace(' ', '_')} "
          f"fnir_best={fnir[best]:.4f} best_minus_cosine_high={high_of_best:+.4f}")


if __name__ == "__main__":
    main()
