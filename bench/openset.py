#!/usr/bin/env python3
"""Open-set identification: are strangers named, and are enrolled people found?

LFW View 1 (bench/faceset.py: every face found the way the API finds it, at
original quality and degraded as cameras deliver it) is split by identity:
- half the people calibrate the decision rule (bench/calibrate.py's code);
- the other half is never seen by the calibration. Of its people with several
  photos, half are enrolled (one to three photos each; their other photos, at
  every quality, are the probes) and half never are (strangers: every photo,
  every quality). People with one photo fill the gallery to 1,000 subjects
  (more strangers if any are left).

In the same run, on the same probes, it compares the decision rule of
repo/decision.py (calibrated threshold from the rate, the gallery's size and
the probe's quality; margin; the quality gate) with the rule it replaced
(best cosine at or over 0.278). FPIR: share of stranger probes named as
anyone. FNIR: share of enrolled probes not named as themselves (refused by
the quality gate or named as someone else included). Rates come with 95 %
Clopper-Pearson intervals.

FNIR at FPIR 1e-2 on degraded probes compares the two rules at their best:
each one's own knob (the cosine threshold; the policy's rate) is set as loose
as 1 % of the same degraded strangers allow, found exactly for both (see
``Operating``), and the difference comes with a 95 % interval from resampling
people.

Tracks: a camera decides on a track again each time a better shot arrives,
so a stranger watched for long is weighed many times. Each person's photos,
at every quality, in a random order, are replayed as one track through the
watcher's own code (watcher/evidence.py; a shot is embedded, as on a camera,
only when it is the track's best so far and passes the quality gate). In the
same run the per-decision rule it replaced (every decision at the full rate)
is replayed on the same tracks. A track's FPIR: share of strangers' tracks
named as anyone at any decision; FNIR: share of enrolled people's tracks not
named as themselves by their first naming. Printed before the last line as
``openset_tracks track_fpir=<> track_fpir_before=<> track_fnir=<>
track_fnir_before=<> decisions_per_track=<>`` (gallery 1,000, the default
preset; medium when the default is a fixed cosine).

Last line: ``openset default_fpir=<> default_fpir_today=<> fnir_1e-2_degraded=<>
fnir_1e-2_degraded_today=<> strict_fpir_heldout=<> repeat_stranger_fpir=<>``.
"""

from __future__ import annotations

import argparse
import sys
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.calibrate import calibrate  # noqa: E402
from bench.common import add_config_arg, make_analyzer, make_config  # noqa: E402
from bench.faceset import FaceSet, build_faceset  # noqa: E402

from facewatch.repo_setup import default_policy
from repo.calibration import Calibration
from repo.decision import CANDIDATES, Candidate, Policy, decide
from watcher.evidence import TrackEvidence

TODAY_THRESHOLD = 0.278


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval (bisection on the binomial tail; no scipy needed)."""
    if n == 0:
        return 0.0, 1.0
    alpha = (1 - level) / 2

    def tail_ge(p: float, k: int) -> float:  # P(X >= k)
        return 1.0 - sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k)) if k <= 200 else \
            float(1.0 - _normal_cdf((k - 0.5 - n * p) / math.sqrt(max(n * p * (1 - p), 1e-12))))

    def solve(f: object, target: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if f(mid) < target:  # type: ignore[operator]
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    # Both tails grow with p: the bounds are where they reach alpha and 1 - alpha.
    low = 0.0 if k == 0 else solve(lambda p: tail_ge(p, k), alpha)
    high = 1.0 if k == n else solve(lambda p: tail_ge(p, k + 1), 1 - alpha)
    return low, high


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def rate(hits: np.ndarray) -> str:
    k, n = int(hits.sum()), len(hits)
    low, high = clopper_pearson(k, n)
    return f"{k / max(n, 1):.4f} ({k}/{n}, 95 % {low:.4f}-{high:.4f})"


@dataclass(slots=True)
class Gallery:
    embeddings: np.ndarray  # (F, D)
    subject_of_face: np.ndarray  # (F,) subject index
    person_of_subject: np.ndarray  # (S,) person id

    def subject_scores(self, probes: np.ndarray) -> np.ndarray:
        """(P, S): each subject's best face similarity."""
        faces = probes @ self.embeddings.T
        out = np.full((len(probes), len(self.person_of_subject)), -2.0, np.float32)
        np.maximum.at(out.T, self.subject_of_face, faces.T)
        return out


def split(faces: FaceSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
    people = np.unique(faces.person)
    rng = np.random.default_rng(seed)
    rng.shuffle(people)
    half = len(people) // 2
    return people[:half], people[half:]


def build_gallery(faces: FaceSet, people: np.ndarray, size: int, seed: int
                  ) -> tuple[Gallery, np.ndarray, np.ndarray, np.ndarray]:
    """(gallery, enrolled-probe mask, stranger mask, probe subject index) over ``faces``."""
    rng = np.random.default_rng(seed)
    originals = faces.variant == 0
    photos = {int(p): sorted(set(faces.paths[originals & (faces.person == p)].tolist())) for p in people}
    multi = [p for p in people if len(photos[int(p)]) >= 2]
    single = [p for p in people if len(photos[int(p)]) == 1]
    rng.shuffle(multi)
    rng.shuffle(single)
    enrolled_people = multi[: len(multi) // 2][:size]
    fillers = single[: max(0, size - len(enrolled_people))]
    stranger_people = set(multi[len(multi) // 2:]) | set(single[len(fillers):])
    vectors, subject_of_face, person_of_subject = [], [], []
    enrolled_paths: set[str] = set()
    for s, person in enumerate(list(enrolled_people) + list(fillers)):
        mine = photos[int(person)]
        take = mine if len(mine) == 1 else mine[: min(3, len(mine) - 1)]
        for path in take:
            row = int(np.flatnonzero(originals & (faces.paths == path))[0])
            vectors.append(faces.embeddings[row])
            subject_of_face.append(s)
            enrolled_paths.add(path)
        person_of_subject.append(int(person))
    gallery = Gallery(np.stack(vectors), np.asarray(subject_of_face), np.asarray(person_of_subject))
    is_enrolled = np.isin(faces.person, np.asarray(enrolled_people)) & ~np.isin(faces.paths, list(enrolled_paths))
    is_stranger = np.isin(faces.person, np.asarray(sorted(stranger_people)))
    subject_index = {int(p): s for s, p in enumerate(gallery.person_of_subject)}
    truth = np.array([subject_index.get(int(p), -1) for p in faces.person])
    return gallery, is_enrolled, is_stranger, truth


def named_today(scores: np.ndarray, threshold: float) -> np.ndarray:
    """(P,) subject index named by the old rule, -1 for nobody."""
    best = scores.argmax(axis=1)
    return np.where(scores[np.arange(len(scores)), best] >= threshold, best, -1)


def named_by_rule(scores: np.ndarray, quality: np.ndarray, policy: Policy, calibration: Calibration,
                  comparisons: int, negatives: dict[int, np.ndarray] | None = None,
                  probes: np.ndarray | None = None) -> np.ndarray:
    """(P,) subject index named by repo/decision.py, -1 for nobody; ``negatives[subject]``: (K, D) vectors."""
    top = np.argsort(-scores, axis=1)[:, :CANDIDATES]
    out = np.full(len(scores), -1)
    for i in range(len(scores)):
        candidates = []
        for s in top[i]:
            negative = None
            if negatives and int(s) in negatives and probes is not None:
                negative = float((negatives[int(s)] @ probes[i]).max())
            candidates.append(Candidate(int(s), float(scores[i, s]), negative))
        verdict = decide(candidates, policy, calibration, quality=float(quality[i]), comparisons=comparisons)
        if verdict.match is not None:
            out[i] = verdict.match.key
    return out


@dataclass(slots=True, frozen=True)
class Watched:
    """How the camera decided one track: the subject it named first (-1: nobody) and how many decisions."""

    named: int
    decisions: int


def watch(rows: np.ndarray, faces: FaceSet, gallery: Gallery, policy: Policy, calibration: Calibration,
          shots: int, per_decision: bool) -> Watched:
    """Replay ``rows`` (one person's shots, in the order a camera sees them) as one track, as
    watcher/pipeline.py decides it; ``per_decision``: the rule it replaced, every decision at the full rate."""
    evidence = TrackEvidence(shots)
    comparisons = len(gallery.embeddings)

    def search(template: np.ndarray) -> tuple[list[Candidate], int]:
        scores = gallery.subject_scores(template[None])[0]
        return [Candidate(int(s), float(scores[s])) for s in np.argsort(-scores)[:CANDIDATES]], comparisons

    best_quality, decisions = -1.0, 0
    for row in map(int, rows):
        quality = float(faces.quality[row])
        if quality < policy.min_quality or quality <= best_quality:
            continue  # the tracker keeps it out (gate) or it is no new best shot: not embedded
        best_quality = quality
        evidence.add(quality, faces.embeddings[row])
        if per_decision:
            candidates, compared = search(evidence.template())
            verdict = decide(candidates, policy, calibration, quality=evidence.quality, comparisons=compared)
        else:
            found = evidence.decide(search, policy, calibration)
            if found is None:
                continue
            verdict = found.decision
        decisions += 1
        if verdict.match is not None:
            return Watched(int(verdict.match.key), decisions)
    return Watched(-1, decisions)


def watch_people(mask: np.ndarray, faces: FaceSet, gallery: Gallery, policy: Policy, calibration: Calibration,
                 shots: int, per_decision: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(person, named, decisions) for one track per person among ``mask``'s rows (order seeded per person,
    the same for both rules)."""
    people = np.unique(faces.person[mask])
    named, decisions = np.full(len(people), -1), np.zeros(len(people), int)
    for i, person in enumerate(people):
        rows = np.flatnonzero(mask & (faces.person == person))
        order = np.random.default_rng([seed, int(person)]).permutation(rows)
        watched = watch(order, faces, gallery, policy, calibration, shots, per_decision)
        named[i], decisions[i] = watched.named, watched.decisions
    return people, named, decisions


@dataclass(slots=True, frozen=True)
class Operating:
    """What a rule with one knob does to each probe, at every setting of the knob at once.

    A probe is named as ``named`` once the knob is looser than ``looseness`` (inf: never). Both rules are
    reduced to this, so FNIR at a given FPIR is found the same way for each: the knob is set as loose as the
    stranger probes allow, on the same strangers, and read on the same enrolled probes.
    """

    named: np.ndarray  # (P,) subject index, -1 for nobody at any setting
    looseness: np.ndarray  # (P,) float64


def by_cosine(scores: np.ndarray) -> Operating:
    """Best cosine over a threshold: the knob is minus the threshold."""
    best = scores.argmax(axis=1)
    return Operating(best, -scores[np.arange(len(scores)), best].astype(np.float64))


def by_rule(scores: np.ndarray, quality: np.ndarray, policy: Policy, calibration: Calibration, comparisons: int,
            rows: np.ndarray) -> Operating:
    """repo/decision.py as it decides: the knob is log10 of the policy's rate. For each probe in ``rows`` the
    smallest rate that names it is found by bisection (naming only grows with the rate: the threshold falls,
    while the gate, the margin and the candidate named do not depend on it)."""
    strictest, loosest = -12.0, math.log10(0.999)
    named = np.full(len(scores), -1)
    looseness = np.full(len(scores), np.inf)
    top = np.argsort(-scores, axis=1)[:, :CANDIDATES]

    def at(i: int, log_rate: float) -> int:
        candidates = [Candidate(int(s), float(scores[i, s])) for s in top[i]]
        verdict = decide(candidates, replace(policy, rate=10.0 ** log_rate, threshold=None), calibration,
                         quality=float(quality[i]), comparisons=comparisons)
        return -1 if verdict.match is None else int(verdict.match.key)

    for i in map(int, np.flatnonzero(rows)):
        who = at(i, loosest)
        if who == -1:
            continue
        named[i] = who
        lo, hi = strictest, loosest  # invariant: named at hi; at lo not, unless lo is the strictest
        if at(i, lo) != -1:
            looseness[i] = -np.inf
            continue
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if at(i, mid) != -1 else (mid, hi)
        looseness[i] = hi
    return Operating(named, looseness)


def fnir_at_fpir(rule: Operating, strangers: np.ndarray, enrolled: np.ndarray, truth: np.ndarray, fpir: float
                 ) -> tuple[np.ndarray, float]:
    """(misses over ``enrolled``, knob): the knob just stricter than the (k+1)-th most easily named stranger, k =
    floor(fpir x strangers), so that at most k strangers are named (ties named none of them)."""
    ordered = np.sort(rule.looseness[strangers])
    k = int(math.floor(fpir * len(ordered)))
    knob = float(ordered[k]) if k < len(ordered) else np.inf
    named = (rule.looseness < knob) & (rule.named == truth)
    return ~named[enrolled], knob


def paired_difference(a: Operating, b: Operating, strangers: np.ndarray, enrolled: np.ndarray, truth: np.ndarray,
                      person: np.ndarray, fpir: float, seed: int, rounds: int = 1000) -> tuple[float, float]:
    """95 % interval of FNIR(a) - FNIR(b) at ``fpir``: people (not probes: a person's photos and their degraded
    copies are not independent) resampled with replacement, each rule's knob set again on the resampled
    strangers."""
    rng = np.random.default_rng(seed)

    def groups(mask: np.ndarray) -> list[np.ndarray]:
        rows = np.flatnonzero(mask)
        return [rows[person[rows] == p] for p in np.unique(person[rows])]

    stranger_groups, enrolled_groups = groups(strangers), groups(enrolled)
    differences = []
    for _ in range(rounds):
        s = np.concatenate([stranger_groups[i] for i in rng.integers(len(stranger_groups), size=len(stranger_groups))])
        e = np.concatenate([enrolled_groups[i] for i in rng.integers(len(enrolled_groups), size=len(enrolled_groups))])
        fnir = []
        for rule in (a, b):
            knob = np.sort(rule.looseness[s])
            k = int(math.floor(fpir * len(knob)))
            limit = knob[k] if k < len(knob) else np.inf
            fnir.append(float(1.0 - ((rule.looseness[e] < limit) & (rule.named[e] == truth[e])).mean()))
        differences.append(fnir[0] - fnir[1])
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    cfg = make_config(args.config)
    analyzer = make_analyzer(cfg)
    faces = build_faceset(analyzer, variants=2)
    calibration_people, held_out = split(faces, args.seed)
    calibration, pairs = calibrate(faces.select(np.isin(faces.person, calibration_people)),
                                   analyzer.embedder.model_id, "openset calibration half", verbose=False)
    print(f"faces {len(faces)}; calibration half: {len(calibration_people)} people, {pairs:,} impostor pairs; "
          f"held out: {len(held_out)} people")
    policy = default_policy(cfg.recognition, cfg.quality.min_score)
    rates = cfg.recognition.rates
    degraded = faces.variant > 0
    summary: dict[str, float] = {}
    for size in (100, 1000):
        gallery, enrolled, stranger, truth = build_gallery(faces, held_out, size, args.seed)
        scores = gallery.subject_scores(faces.embeddings)
        n_faces = len(gallery.embeddings)
        print(f"\ngallery {size}: {len(gallery.person_of_subject)} subjects, {n_faces} faces; "
              f"{int(enrolled.sum())} enrolled probes, {int(stranger.sum())} stranger probes")
        today = named_today(scores, TODAY_THRESHOLD)
        default = named_by_rule(scores, faces.quality, policy, calibration, n_faces)
        for name, named in (("today (cosine 0.278)", today), (f"rule ({cfg.recognition.threshold})", default)):
            for label, mask in (("original", ~degraded), ("degraded", degraded)):
                fp, fn = (named != -1)[stranger & mask], (named != truth)[enrolled & mask]
                print(f"  {name:24s} {label:8s} FPIR {rate(fp)}  FNIR {rate(fn)}")
        if size != 1000:
            continue
        summary["default_fpir"] = float((default != -1)[stranger].mean())
        summary["default_fpir_today"] = float((today != -1)[stranger].mean())
        # FNIR at FPIR 1e-2 on degraded probes, both rules measured the same way (see ``Operating``).
        strangers_degraded, enrolled_degraded = stranger & degraded, enrolled & degraded
        looked_at = strangers_degraded | enrolled_degraded
        cosine = by_cosine(scores)
        rule = by_rule(scores, faces.quality, policy, calibration, n_faces, looked_at)
        ungated = by_rule(scores, faces.quality, replace(policy, min_quality=0.0), calibration, n_faces, looked_at)
        missed_today, knob_today = fnir_at_fpir(cosine, strangers_degraded, enrolled_degraded, truth, 1e-2)
        missed_rule, knob_rule = fnir_at_fpir(rule, strangers_degraded, enrolled_degraded, truth, 1e-2)
        missed_ungated, _ = fnir_at_fpir(ungated, strangers_degraded, enrolled_degraded, truth, 1e-2)
        diff_low, diff_high = paired_difference(rule, cosine, strangers_degraded, enrolled_degraded, truth,
                                                faces.person, 1e-2, args.seed)
        fnir_today, fnir_rule = float(missed_today.mean()), float(missed_rule.mean())
        print(f"  at FPIR 1e-2 on {int(strangers_degraded.sum())} degraded strangers (each rule's knob as loose as "
              f"{int(1e-2 * strangers_degraded.sum())} false names allow), FNIR of degraded probes:")
        print(f"    today (best cosine > {-knob_today:.4f}): {rate(missed_today)}")
        print(f"    rule (rate < {10 ** knob_rule:.3g}): {rate(missed_rule)}; rule minus today "
              f"{fnir_rule - fnir_today:+.4f} (95 % {diff_low:+.4f} to {diff_high:+.4f}, people resampled)")
        print(f"    rule without the quality gate: {rate(missed_ungated)}")
        print(f"    best subject not the right one (no threshold does better): "
              f"{rate((cosine.named != truth)[enrolled_degraded])}")
        summary["fnir_today"], summary["fnir_rule"] = fnir_today, fnir_rule
        for preset, value in rates.items():
            named = named_by_rule(scores, faces.quality, replace(policy, rate=value, threshold=None), calibration,
                                  n_faces)
            fp = (named != -1)[stranger]
            print(f"  preset {preset} (FPIR {value:g}) on held-out strangers: FPIR {rate(fp)}; "
                  f"FNIR {rate((named != truth)[enrolled])}")
            if preset == "strict":
                summary["strict_upper"] = clopper_pearson(int(fp.sum()), len(fp))[1]
        # Repeat strangers: under the low preset (so that there are false names to correct), each stranger's
        # first falsely named probe is corrected ("not X"); their other probes are decided again.
        low = replace(policy, rate=rates["low"], threshold=None)
        before = named_by_rule(scores, faces.quality, low, calibration, n_faces)
        negatives: dict[int, list[np.ndarray]] = {}
        corrected = np.full(len(faces), -1)  # each later probe of a corrected stranger: the subject corrected
        for person in np.unique(faces.person[stranger]):
            rows = np.flatnonzero(stranger & (faces.person == person))
            wrong = [r for r in rows if before[r] != -1]
            if wrong and len(rows) > 1:
                negatives.setdefault(int(before[wrong[0]]), []).append(faces.embeddings[wrong[0]])
                corrected[[r for r in rows if r != wrong[0]]] = before[wrong[0]]
        repeat = corrected != -1
        after = named_by_rule(scores, faces.quality, low, calibration, n_faces,
                              {s: np.stack(v) for s, v in negatives.items()}, faces.embeddings)
        print(f"  repeat strangers (low preset, {len(negatives)} subjects corrected once), their other probes:")
        print(f"    named as the subject corrected: before {rate((before == corrected)[repeat])}, "
              f"after {rate((after == corrected)[repeat])}")
        print(f"    named as anyone: before {rate((before != -1)[repeat])}, after {rate((after != -1)[repeat])}")
        print(f"    enrolled FNIR before {rate((before != truth)[enrolled])}, after {rate((after != truth)[enrolled])}")
        summary["repeat_after"] = float((after == corrected)[repeat].mean()) if repeat.any() else 0.0
        # Tracks: every decision a camera makes on a person, not one probe.
        subject_of_person = {int(p): s for s, p in enumerate(gallery.person_of_subject)}
        shots = cfg.watcher.track_shots
        print(f"  tracks (one per person, every photo at every quality, best {shots} shots combined):")
        default_preset = cfg.recognition.threshold if isinstance(cfg.recognition.threshold, str) else "medium"
        for preset, value in rates.items():
            held = replace(policy, rate=value, threshold=None)
            outcome = {}
            for per_decision in (True, False):
                _, named_s, decisions_s = watch_people(stranger, faces, gallery, held, calibration, shots,
                                                       per_decision, args.seed)
                people_e, named_e, decisions_e = watch_people(enrolled, faces, gallery, held, calibration, shots,
                                                              per_decision, args.seed)
                truth_e = np.array([subject_of_person[int(p)] for p in people_e])
                outcome[per_decision] = (named_s != -1, named_e != truth_e,
                                         float(np.concatenate([decisions_s, decisions_e]).mean()))
            (fp_before, fn_before, _), (fp, fn, per_track) = outcome[True], outcome[False]
            mark = " (the default)" if preset == default_preset else ""
            print(f"    {preset}{mark} (FPIR {value:g}): stranger tracks named: per decision {rate(fp_before)}, "
                  f"spent as evidence grows {rate(fp)}; enrolled tracks missed: {rate(fn_before)} -> {rate(fn)}; "
                  f"decisions per track {outcome[True][2]:.2f} -> {per_track:.2f}")
            if preset == default_preset:
                summary |= {"track_fpir": float(fp.mean()), "track_fpir_before": float(fp_before.mean()),
                            "track_fnir": float(fn.mean()), "track_fnir_before": float(fn_before.mean()),
                            "decisions_per_track": per_track}
    print(f"openset_tracks track_fpir={summary['track_fpir']:.4f} "
          f"track_fpir_before={summary['track_fpir_before']:.4f} track_fnir={summary['track_fnir']:.4f} "
          f"track_fnir_before={summary['track_fnir_before']:.4f} "
          f"decisions_per_track={summary['decisions_per_track']:.2f}")
    print(f"openset default_fpir={summary['default_fpir']:.4f} default_fpir_today={summary['default_fpir_today']:.4f} "
          f"fnir_1e-2_degraded={summary['fnir_rule']:.4f} fnir_1e-2_degraded_today={summary['fnir_today']:.4f} "
          f"strict_fpir_heldout={summary['strict_upper']:.4f} repeat_stranger_fpir={summary['repeat_after']:.4f}")


if __name__ == "__main__":
    main()
