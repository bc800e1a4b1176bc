"""JSON shape of an analysed face, shared by the API handlers and the CLI."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from events import Box

from vision.records import Face

__all__ = ("face_to_json",)


def face_to_json(face: Face, *, landmarks: bool = True, embedding: bool = False) -> dict[str, Any]:
    # The one shape of a box (events.Box, as camera events show it), with the detector's confidence.
    out: dict[str, Any] = {"box": {**asdict(Box.of(face.box)), "probability": round(face.det_score, 4)}}
    if landmarks and face.kps is not None:
        out["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.kps]
    if face.quality is not None:
        out["quality"] = face.quality.as_dict()
    if face.attributes:
        out["attributes"] = dict(face.attributes)
    if embedding and face.embedding is not None:
        out["embedding"] = [round(float(v), 6) for v in face.embedding]
    return out
