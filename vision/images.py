"""Decoding untrusted image bytes into BGR arrays, with limits.

Pillow reads every format the API accepts (JPEG, PNG, WEBP, BMP, GIF's first
frame, TIFF) and honours EXIF orientation; we check byte and pixel limits
before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError, ImageTooLargeError, ImageTooSmallError

__all__ = ("ALLOWED_FORMATS", "decode_image")

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})


def decode_image(data: bytes, *, max_bytes: int = 10 * 1024 * 1024, max_pixels: int = 40_000_000) -> np.ndarray:
    """Bytes of an image file -> (H, W, 3) BGR uint8 array, upright."""
    if not data:
        raise ImageDecodeError("empty image")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image is {len(data)} bytes, the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between its own limit and twice it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ALLOWED_FORMATS:
                    raise ImageDecodeError(f"unsupported image format {img.format}")
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
                    )
                if width < 2 or height < 2:
                    raise ImageTooSmallError(f"image is too small to hold a face ({width}x{height})")
                img.seek(0)
                upright = ImageOps.exif_transpose(img)
                rgb = np.asarray(upright.convert("RGB"))
    except (ImageDecodeError, ImageTooLargeError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt files surface as any of these from Pillow's plugins.
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1])
