"""to_blob: BGR uint8 crops to normalised NCHW float32, in the model's channel order."""

from __future__ import annotations

import numpy as np
import pytest

from vision.blob import to_blob


@pytest.mark.parametrize("rgb", [True, False])
@pytest.mark.parametrize(("mean", "std"), [(127.5, 128.0), ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4))])
def test_each_plane_is_its_channel_normalised(rgb: bool, mean: float | tuple[float, float, float],
                                              std: float | tuple[float, float, float]) -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    blob = to_blob(images, mean, std, rgb=rgb)
    assert blob.shape == (2, 3, 5, 7) and blob.dtype == np.float32
    means, stds = np.broadcast_to(mean, (3,)), np.broadcast_to(std, (3,))
    order = (2, 1, 0) if rgb else (0, 1, 2)  # BGR input
    for plane, channel in enumerate(order):
        expected = (images[..., channel].astype(np.float64) - means[plane]) / stds[plane]
        np.testing.assert_allclose(blob[:, plane], expected, rtol=1e-6, atol=1e-6)
