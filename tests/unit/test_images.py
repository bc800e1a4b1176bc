"""decode_image on every accepted format and on hostile input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vision.errors import ImageDecodeError, ImageTooLargeError
from vision.images import decode_image


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _sample() -> Image.Image:
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)  # left half red (RGB)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_formats_decode_to_bgr(fmt: str) -> None:
    out = decode_image(_encode(_sample(), fmt))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    b, g, r = out[20, 5].astype(int)
    assert r > 200 and b < 60  # red stays red in BGR order
    assert out[20, 50].max() < 60


def test_gif_first_frame_only() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue())
    assert out[10, 10, 2] > 200 and out[10, 10, 0] < 60


def test_exif_orientation_is_honoured() -> None:
    img = _sample()  # 60 wide x 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.shape[:2] == (60, 40)


def test_greyscale_and_alpha_become_three_channels() -> None:
    assert decode_image(_encode(Image.new("L", (10, 10), 128), "PNG")).shape == (10, 10, 3)
    assert decode_image(_encode(Image.new("RGBA", (10, 10), (1, 2, 3, 0)), "PNG")).shape == (10, 10, 3)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a", b"hello, not an image", bytes(range(256)) * 4, b"\xff\xd8\xff\xe0" + b"\x00" * 50],
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_truncated_jpeg_and_png() -> None:
    for fmt in ("JPEG", "PNG"):
        data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), fmt)
        with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
            decode_image(data[: len(data) // 2])


def test_byte_limit() -> None:
    data = _encode(_sample(), "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_bytes=len(data) - 1)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A 20000x20000 PNG of one colour compresses to a few hundred KB.
    bomb = _encode(Image.new("L", (20000, 20000), 0), "PNG", optimize=True)
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode_image(bomb, max_pixels=40_000_000)


def test_unsupported_format() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="ICO")
    with pytest.raises(ImageDecodeError, match="unsupported"):
        decode_image(buf.getvalue())


_VALID_PNG = _encode(_sample(), "PNG")
_VALID_JPEG = _encode(_sample(), "JPEG")


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([b"", _VALID_PNG, _VALID_JPEG]),
    cut=st.integers(min_value=0, max_value=2000),
    noise=st.binary(max_size=64),
    at=st.integers(min_value=0, max_value=2000),
)
def test_mangled_bytes_never_escape_as_other_errors(base: bytes, cut: int, noise: bytes, at: int) -> None:
    data = base[:cut] if cut < len(base) else base
    at = min(at, len(data))
    data = data[:at] + noise + data[at + len(noise):]
    try:
        out = decode_image(data)
    except (ImageDecodeError, ImageTooLargeError):
        return
    assert out.ndim == 3 and out.shape[2] == 3
