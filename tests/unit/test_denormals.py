"""Flush-to-zero per thread (vision/denormals.py), checked on real float arithmetic."""

from __future__ import annotations

import platform
import threading

import numpy as np
import pytest

from vision.denormals import set_flush_denormals

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64" or platform.system() != "Linux",
                                reason="FTZ/DAZ through glibc's fenv is set on x86-64 Linux only")


def _in_a_thread(flush: bool) -> tuple[bool, float]:
    out: list[tuple[bool, float]] = []

    def run() -> None:
        done = set_flush_denormals(flush)
        tiny = np.array([1e-39], np.float32)  # a denormal float32
        out.append((done, float((tiny * np.float32(1.0))[0])))

    thread = threading.Thread(target=run)  # its flags die with it; the test process keeps its own
    thread.start()
    thread.join()
    return out[0]


def test_denormals_are_flushed_only_where_asked() -> None:
    done, value = _in_a_thread(False)
    assert done and value == pytest.approx(1e-39, rel=1e-3)
    assert _in_a_thread(True) == (True, 0.0)
