"""Face analysis in worker processes for the API.

Two threads analysing two images reach 36.7 LFW images/s on 2 cores: the ONNX
models scale 2x but the Python around them (alignment, quality, blobs) holds
the GIL. Two processes reach 61.4 images/s (both measured on this project's
2-core machine). The server hands each analysis to a pool of spawned
processes, each with its own models.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from vision.analyzer import FaceAnalyzer
from vision.images import decode_image
from vision.records import Face
from vision.selection import FaceChoice

__all__ = ("ImageLimits", "analysis_pool", "analyze_in_worker", "analyze_source")

# Each pool process builds its analyzer once, in the initializer, and keeps it
# here: the one place a worker process can hold it between calls.
_worker_analyzer: FaceAnalyzer | None = None


def _init_worker(factory: Callable[[], FaceAnalyzer]) -> None:
    global _worker_analyzer
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the processes
    _worker_analyzer = factory()


@dataclass(slots=True, frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


def analyze_source(analyzer: FaceAnalyzer, source: bytes | np.ndarray, limits: ImageLimits, embed: bool,
                   attributes: Sequence[str], max_faces: int | None, choice: FaceChoice | None) -> list[Face]:
    """Decode (when given bytes) and analyse, wherever this runs: the event loop never decodes, and a
    40-megapixel array is never pickled to a worker (the compressed bytes are)."""
    image = decode_image(source, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels) \
        if isinstance(source, bytes) else source
    return analyzer.analyze(image, embed=embed, attributes=attributes, max_faces=max_faces, choice=choice)


def analyze_in_worker(source: bytes | np.ndarray, limits: ImageLimits, embed: bool, attributes: Sequence[str],
                      max_faces: int | None, choice: FaceChoice | None = None) -> list[Face]:
    if _worker_analyzer is None:
        raise RuntimeError("analysis worker used without its initializer")
    return analyze_source(_worker_analyzer, source, limits, embed, attributes, max_faces, choice)


def analysis_pool(factory: Callable[[], FaceAnalyzer], processes: int) -> ProcessPoolExecutor:
    """``factory`` must be picklable (a module-level function, or a partial of one)."""
    return ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(factory,))
