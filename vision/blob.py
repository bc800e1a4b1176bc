"""Turning uint8 BGR crops into normalised NCHW float32 input tensors."""

from __future__ import annotations

import numpy as np

__all__ = ("to_blob",)


def to_blob(
    images: np.ndarray, mean: float | tuple[float, float, float], std: float | tuple[float, float, float],
    *, rgb: bool = True,
) -> np.ndarray:
    """``images`` (N, H, W, 3) BGR uint8 -> (N, 3, H, W) float32 ``(x - mean) / std``.

    ``mean``/``std`` are per channel in the model's channel order (RGB when
    ``rgb``), in 0..255 pixel units.
    """
    batch = images[..., ::-1] if rgb else images
    mean_arr = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std_arr = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    blob = batch.transpose(0, 3, 1, 2).astype(np.float32)
    blob -= mean_arr
    blob /= std_arr
    return blob
