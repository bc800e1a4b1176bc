"""Pure geometry: similarity transforms, crops, box maths. No models."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = (
    "ARCFACE_112",
    "similarity_transform",
    "align_face",
    "crop_box",
    "iou_matrix",
    "containment_matrix",
    "nms",
    "five_points_from_68",
)

# The standard ArcFace 112x112 template: left eye, right eye, nose, mouth corners.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping ``src`` points onto ``dst``.

    Returns the 2x3 affine matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / n
    scale = (s * d).sum() / src_var if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix.astype(np.float32)


def align_face(image: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp the face whose five points are ``kps`` onto the ArcFace template."""
    template = ARCFACE_112 * (size / 112.0)
    matrix = similarity_transform(kps, template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def crop_box(
    image: np.ndarray, box: np.ndarray, out_w: int, out_h: int, scale: float = 1.0,
    square: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``box`` grown by ``scale`` about its centre, resized to out_w x out_h.

    Parts outside the image are filled with black instead of shifting the crop,
    so the mapping back to image pixels stays a plain scale and offset.
    Returns the crop and ``(x0, y0, w, h)`` of the region taken, in image pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = (x2 - x1) * scale, (y2 - y1) * scale
    if square:
        w = h = max(w, h)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0, y0 = cx - w / 2, cy - h / 2
    sx, sy = out_w / max(w, 1e-6), out_h / max(h, 1e-6)
    matrix = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    crop = cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)
    return crop, np.array([x0, y0, w, h], np.float32)


def _areas(boxes: np.ndarray) -> np.ndarray:
    areas: np.ndarray = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return areas


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter: np.ndarray = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = _intersections(a, b)
    iou: np.ndarray = (inter / np.maximum(_areas(a)[:, None] + _areas(b)[None, :] - inter, 1e-9)).astype(np.float32)
    return iou


def containment_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of each box of ``b`` (M, 4) that lies inside each box of ``a`` (N, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inside: np.ndarray = (_intersections(a, b) / np.maximum(_areas(b)[None, :], 1e-9)).astype(np.float32)
    return inside


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, containment: float = 1.0) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first.

    A box lying more than ``containment`` inside a better one is dropped too:
    the detector sometimes adds a second box on the lower half of a large face
    (mouth and chin), whose IoU with the whole face is small.
    """
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        overlaps = iou_matrix(boxes[best : best + 1], boxes[rest])[0]
        inside = containment_matrix(boxes[best : best + 1], boxes[rest])[0]
        order = rest[(overlaps <= iou_threshold) & (inside <= containment)]
    return np.array(keep, dtype=np.int64)


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """Eyes, nose tip and mouth corners from 68 iBUG points (design.md 6)."""
    p = np.asarray(points, np.float32)
    return np.stack(
        [
            p[[37, 38, 40, 41]].mean(0),
            p[[43, 44, 46, 47]].mean(0),
            p[30],
            (p[48] + p[60]) / 2,
            (p[54] + p[64]) / 2,
        ]
    ).astype(np.float32)
