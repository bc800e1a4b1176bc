"""Face analysis in worker processes for the API.

Two threads analysing two images reach 36.7 LFW images/s on 2 cores: the ONNX
models scale 2x but the Python around them (alignment, quality, blobs) holds
the GIL. Two processes reach 61.4 images/s (both measured on this project's
2-core machine). The server hands each analysis to a pool of spawned
processes, each with its own models.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from vision.analyzer import FaceAnalyzer
from vision.images import decode_image
from vision.records import Face
from vision.selection import FaceChoice

__all__ = ("ImageLimits", "analysis_pool", "analyze_in_worker", "analyze_source")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Each pool process builds its analyzer once, in the initializer, and keeps it
# here: the one place a worker process can hold it between calls.
_worker_analyzer: FaceAnalyzer | None = None


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when its parent dies, however it dies (kill -9 included):
    an orphaned worker would hold its models' memory for ever. Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request was made
        os._exit(1)


def _init_worker(factory: Callable[[], FaceAnalyzer], parent_pid: int) -> None:
    global _worker_analyzer
    import cv2

    _die_with_parent(parent_pid)
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
                               initargs=(factory, os.getpid()))
