"""Schemathesis hooks for the contract run (tests/integration/test_openapi_contract.py): the one thing
a schema cannot say is what a face looks like, so image and zip uploads are drawn from real faces.

Only what is sent in file parts and base64 fields changes; every check, and every negative case,
stays as schemathesis makes it. Loaded by the CLI through SCHEMATHESIS_HOOKS; reads the face images
from FWTEST_DATA_DIR (set by the test).
"""

from __future__ import annotations

import base64
import io
import os
import zipfile
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

# Small photos of one face each, and the media type of each.
_FACES = ("faces/enroll/kit_harington/john2.jpeg", "faces/probe/obama-240p.jpg", "faces/enroll/alex_lacamoire/img2.png")


def _faces() -> list[bytes]:
    root = Path(os.environ["FWTEST_DATA_DIR"])
    return [(root / relative).read_bytes() for relative in _FACES]


def _zip(photos: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for position, photo in enumerate(photos):
            archive.writestr(f"person{position}/photo{position}.jpg", photo)
    return buffer.getvalue()


_PHOTOS = _faces()
for media_type in ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff"):
    schemathesis.openapi.media_type(media_type, st.sampled_from(_PHOTOS))
schemathesis.openapi.media_type("application/zip", st.just(_zip(_PHOTOS)))
# format: byte is only ever an image in facewatch's document.
schemathesis.openapi.format("byte", st.sampled_from([base64.b64encode(p).decode() for p in _PHOTOS]))
