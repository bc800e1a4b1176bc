"""Face embeddings from aligned 112x112 crops (ArcFace-style models)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .blob import to_blob

__all__ = ("EmbedderOptions", "ArcFaceEmbedder", "l2_normalise")


@dataclass(slots=True, frozen=True)
class EmbedderOptions:
    input_size: int = 112
    mean: float = 127.5
    std: float = 128.0
    rgb: bool = True
    # Average the embedding of the crop and of its mirror image: a small, steady
    # accuracy gain (bench/verify_pairs.py) for twice the model time.
    flip: bool = False
    max_batch: int = 32


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class ArcFaceEmbedder:
    def __init__(self, session: ort.InferenceSession, options: EmbedderOptions, model_id: str) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.options = options
        self.model_id = model_id  # stored beside every embedding it makes
        self.dim = int(session.get_outputs()[0].shape[-1])

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) BGR uint8 -> (N, D) float32 L2-normalised."""
        return self.embed_with_norms(aligned)[0]

    def embed_with_norms(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised embeddings and the model's raw output norms, (N,).

        Margin-trained (ArcFace-style) models give recognisable faces long
        raw embeddings and blurred, occluded or tiny ones short ones (the
        premise of MagFace); the norm is a quality measure the model gives for
        free (vision/quality.py).
        """
        if len(aligned) == 0:
            return np.zeros((0, self.dim), np.float32), np.zeros((0,), np.float32)
        o = self.options
        chunks, norms = [], []
        for start in range(0, len(aligned), o.max_batch):
            batch = aligned[start : start + o.max_batch]
            if o.flip:
                batch = np.concatenate([batch, batch[:, :, ::-1]])
            (out,) = self.session.run(None, {self.input_name: to_blob(batch, o.mean, o.std, rgb=o.rgb)})
            raw = np.linalg.norm(out, axis=-1)
            if o.flip:
                half = len(out) // 2
                out = l2_normalise(out[:half]) + l2_normalise(out[half:])
                raw = (raw[:half] + raw[half:]) / 2
            chunks.append(out)
            norms.append(raw)
        return l2_normalise(np.concatenate(chunks)), np.concatenate(norms).astype(np.float32)
