"""Building ONNX Runtime sessions: one place that picks providers and threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from .denormals import flush_denormals_in_this_thread
from .errors import ModelLoadError
from .graph_patch import load_patched

__all__ = ("RuntimeOptions", "SessionFactory", "ModelSession", "available_device")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class RuntimeOptions:
    device: str = "auto"  # auto | cpu | cuda
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    # Spinning threads of several sessions fight for the same cores (design.md 6).
    allow_spinning: bool = False


def available_device(requested: str = "auto") -> str:
    """``cuda`` when asked for (or auto) and onnxruntime-gpu sees a GPU, else ``cpu``."""
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if requested == "cuda" and not has_cuda:
        raise ModelLoadError(
            "device 'cuda' requested but onnxruntime has no CUDA provider "
            "(install the 'gpu' extra: onnxruntime-gpu)"
        )
    if requested == "cpu":
        return "cpu"
    return "cuda" if has_cuda else "cpu"


class ModelSession(ort.InferenceSession):  # type: ignore[misc]  # onnxruntime is untyped
    """An inference session that runs with denormals flushed to zero in the
    calling thread (see ``denormals.py``: 7x on the embedder on Intel CPUs)."""

    def __init__(self, model: bytes, sess_options: ort.SessionOptions, providers: list[str]) -> None:
        super().__init__(model, sess_options=sess_options, providers=providers)
        self._flushed = threading.local()  # which threads have FTZ set already

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: ort.RunOptions | None = None) -> list[Any]:
        if not getattr(self._flushed, "done", False):
            flush_denormals_in_this_thread()
            self._flushed.done = True
        outputs: list[Any] = super().run(output_names, input_feed, run_options)
        return outputs


class SessionFactory:
    """Creates inference sessions with the same options for every model."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.device = available_device(options.device)

    def providers(self) -> list[str]:
        if self.device == "cuda":
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def create(self, path: Path, *, dynamic_batch: bool = True) -> ModelSession:
        if not path.is_file():
            raise ModelLoadError(
                f"model file {path} not found; run 'facewatch models fetch' "
                "or point the config at your own ONNX file"
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.options.intra_op_threads
        so.inter_op_num_threads = self.options.inter_op_threads
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.options.allow_spinning else "0"
        )
        so.add_session_config_entry("session.set_denormal_as_zero", "1")  # ORT's own pool threads
        so.log_severity_level = 3
        try:
            model_bytes = load_patched(path, dynamic_batch=dynamic_batch)
            return ModelSession(model_bytes, so, self.providers())
        except ModelLoadError:
            raise
        except Exception as exc:  # onnx/ort raise many unrelated types for a bad file
            raise ModelLoadError(f"cannot load model {path}: {exc}") from exc
