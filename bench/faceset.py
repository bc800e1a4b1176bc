"""LFW View 1 faces through the API's own path, at original quality and degraded as cameras deliver them.

Every image is analysed as a probe is (``FaceAnalyzer.analyze(max_faces=1)``:
the most prominent face, its quality, its embedding), once as it is and
``variants`` times degraded: the whole photo scaled so the face is 24-80 px,
JPEG quality 30-70, and (half of them) a motion blur of 2-5 px, in that order,
as a camera's optics, encoder and a moving person would. The degradation of
each (image, variant) is drawn from a seeded generator, so a run is repeatable.

Cached per model, variant count and seed in the temp folder (several minutes
to build on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, add_config_arg, make_analyzer, make_config  # noqa: E402

from vision.analyzer import FaceAnalyzer
from vision.images import decode_image

__all__ = ("FaceSet", "build_faceset", "degrade")

LFW_IMAGES = DATA / "pairs" / "lfw-view1" / "images"


@dataclass(slots=True)
class FaceSet:
    """One row per (image, variant) whose face was found; ``variant`` 0 is the original."""

    paths: np.ndarray  # (N,) str, relative to LFW_IMAGES
    person: np.ndarray  # (N,) int person id
    variant: np.ndarray  # (N,) int
    embeddings: np.ndarray  # (N, D) float32
    norms: np.ndarray  # (N,) raw embedding norm
    quality: np.ndarray  # (N,) quality score as the API computes it
    size_px: np.ndarray  # (N,)
    sharpness: np.ndarray  # (N,)
    yaw: np.ndarray  # (N,)
    face_px: np.ndarray  # (N,) the face size the degradation aimed at (0: original)
    jpeg: np.ndarray  # (N,) JPEG quality (0: original)
    blur_px: np.ndarray  # (N,) motion blur length (0: none)
    missed: int  # (image, variant)s where no face was found

    def select(self, mask: np.ndarray) -> FaceSet:
        fields = {name: getattr(self, name)[mask] for name in FaceSet.__slots__ if name != "missed"}
        return FaceSet(missed=self.missed, **fields)

    def __len__(self) -> int:
        return len(self.person)


def degrade(image: np.ndarray, face_side: float, rng: np.random.Generator) -> tuple[np.ndarray, int, int, int]:
    """(degraded image, target face px, JPEG quality, blur length)."""
    target = int(rng.integers(24, 81))
    scale = min(1.0, target / max(face_side, 1.0))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    blur = int(rng.integers(2, 6)) if rng.random() < 0.5 else 0
    if blur:
        line = np.zeros((blur, blur), np.float32)
        line[blur // 2, :] = 1.0 / blur
        angle = float(rng.uniform(0, 180))
        rotation = cv2.getRotationMatrix2D(((blur - 1) / 2, (blur - 1) / 2), angle, 1.0)
        kernel = np.asarray(cv2.warpAffine(line, rotation, (blur, blur)), np.float32)
        kernel /= max(float(kernel.sum()), 1e-6)
        small = np.asarray(cv2.filter2D(small, -1, kernel), np.uint8)
    quality = int(rng.integers(30, 71))
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_COLOR), np.uint8), target, quality, blur


def build_faceset(analyzer: FaceAnalyzer, variants: int = 2, seed: int = 7, limit: int | None = None) -> FaceSet:
    version = 6  # bump when the analysis or the degradation changes
    cache = Path(tempfile.gettempdir()) / (
        f"facewatch-faceset-v{version}-{analyzer.embedder.model_id}-{variants}-{seed}-{limit}.npz")
    if cache.exists():
        data = dict(np.load(cache, allow_pickle=False))
        missed = int(data.pop("missed"))
        return FaceSet(missed=missed, **data)
    paths = sorted(LFW_IMAGES.glob("*/*.jpg"))[:limit]
    people = {name: i for i, name in enumerate(sorted({p.parent.name for p in paths}))}
    rows: dict[str, list[object]] = {name: [] for name in FaceSet.__slots__ if name != "missed"}
    missed = 0
    started = time.monotonic()
    for n, path in enumerate(paths):
        original = decode_image(path.read_bytes())
        face_side = 0.0
        for variant in range(variants + 1):
            rng = np.random.default_rng([seed, n, variant])
            image, target, quality, blur = (original, 0, 0, 0) if variant == 0 else degrade(original, face_side, rng)
            faces = analyzer.analyze(image, max_faces=1)
            if not faces or faces[0].embedding is None or faces[0].quality is None:
                missed += 1
                if variant == 0:
                    break  # no reference size to degrade to
                continue
            face = faces[0]
            assert face.quality is not None and face.embedding is not None
            if variant == 0:
                face_side = face.size_px
            for name, value in (("paths", str(path.relative_to(LFW_IMAGES))), ("person", people[path.parent.name]),
                                ("variant", variant), ("embeddings", face.embedding), ("norms", face.embedding_norm),
                                ("quality", face.quality.score), ("size_px", face.size_px),
                                ("sharpness", face.quality.sharpness), ("yaw", face.quality.yaw_deg),
                                ("face_px", target), ("jpeg", quality), ("blur_px", blur)):
                rows[name].append(value)
        if n % 500 == 499:
            print(f"  faceset: {n + 1}/{len(paths)} images, {time.monotonic() - started:.0f} s", flush=True)
    arrays = {name: np.asarray(values) for name, values in rows.items()}
    arrays["embeddings"] = arrays["embeddings"].astype(np.float32)
    np.savez(cache, missed=np.asarray(missed), **arrays)  # type: ignore[arg-type]  # numpy's stub: one positional
    return FaceSet(missed=missed, **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--variants", type=int, default=2, help="degraded copies of each image")
    args = parser.parse_args()
    faces = build_faceset(make_analyzer(make_config(args.config)), variants=args.variants)
    for variant in range(args.variants + 1):
        rows = faces.variant == variant
        size = float(np.median(faces.size_px[rows]))
        print(f"variant {variant}: {int(rows.sum())} faces, median size {size:.0f} px, "
              f"quality >= 0.3: {float((faces.quality[rows] >= 0.3).mean()):.3f}")
    print(f"faceset faces={len(faces)} missed={faces.missed}")


if __name__ == "__main__":
    main()
