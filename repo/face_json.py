"""JSON shape of an analysed face, shared by the API handlers and the CLI."""

from __future__ import annotations

from typing import Any

from vision.records import Face

__all__ = ("face_to_json",)


def face_to_json(face: Face, *, landmarks: bool = True, embedding: bool = False) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(float(v), 1) for v in face.box)
    out: dict[str, Any] = {
        "box": {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2, "probability": round(face.det_score, 4)},
    }
    if landmarks and face.kps is not None:
        out["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.kps]
    if face.quality is not None:
        out["quality"] = face.quality.as_dict()
    if face.attributes:
        out["attributes"] = dict(face.attributes)
    if embedding and face.embedding is not None:
        out["embedding"] = [round(float(v), 6) for v in face.embedding]
    return out
