"""Flush-to-zero for the CPU threads that run the models.

Some models of the default pack produce denormal floats (the embedder has
8,938 denormal weights). Intel CPUs take a slow microcode assist on each: on
the Xeon this was measured on, the embedder took 88 ms a face with denormals
and 12.4 ms without, with bit-identical output. ONNX Runtime's
``session.set_denormal_as_zero`` reaches only its own pool threads, and with
one intra-op thread a model runs on the caller's thread; so each thread that
runs a model sets FTZ and DAZ in its own MXCSR first, through glibc's
``fegetenv``/``fesetenv`` (x86-64 Linux; elsewhere nothing is changed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

__all__ = ("flush_denormals_in_this_thread", "set_flush_denormals")

log = logging.getLogger(__name__)

# glibc's x86-64 fenv_t: the x87 environment (28 bytes), then the SSE MXCSR.
_FENV_SIZE = 32
_MXCSR_OFFSET = 28
_FTZ_DAZ = 0x8040  # flush-to-zero (bit 15) | denormals-are-zero (bit 6)


def _libm() -> ctypes.CDLL | None:
    if platform.machine() not in ("x86_64", "AMD64") or platform.system() != "Linux":
        return None
    name = ctypes.util.find_library("m")
    try:
        return ctypes.CDLL(name or "libm.so.6")
    except OSError:
        return None


_LIBM = _libm()  # a handle to a system library, loaded once; never changes


def flush_denormals_in_this_thread() -> bool:
    """Set FTZ|DAZ for the calling thread (threads it starts inherit it); True when set."""
    return set_flush_denormals(True)


def set_flush_denormals(enabled: bool) -> bool:
    """Turn FTZ|DAZ on or off for the calling thread; True when the flags now say so."""
    if _LIBM is None:
        return False
    env = (ctypes.c_ubyte * _FENV_SIZE)()
    if _LIBM.fegetenv(env) != 0:
        return False
    mxcsr = ctypes.c_uint32.from_buffer(env, _MXCSR_OFFSET)
    mxcsr.value = mxcsr.value | _FTZ_DAZ if enabled else mxcsr.value & ~_FTZ_DAZ
    if _LIBM.fesetenv(env) != 0:
        return False
    check = (ctypes.c_ubyte * _FENV_SIZE)()
    _LIBM.fegetenv(check)
    flags = ctypes.c_uint32.from_buffer(check, _MXCSR_OFFSET).value & _FTZ_DAZ
    return flags == (_FTZ_DAZ if enabled else 0)
