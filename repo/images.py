"""Original images on disk, content-addressed, and face thumbnails."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

__all__ = ("ImageStore", "photo_hash", "thumbnail_jpeg")


def photo_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def thumbnail_jpeg(aligned: np.ndarray, size: int = 112, quality: int = 85) -> bytes:
    image = aligned if aligned.shape[0] == size else cv2.resize(aligned, (size, size))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode thumbnail")
    return encoded.tobytes()


class ImageStore:
    """``<root>/ab/cdef...``: the key is the sha256 of the bytes, so a photo
    enrolled twice is stored once; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        key = photo_hash(data)
        path = self._path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return key

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
