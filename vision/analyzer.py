"""FaceAnalyzer: the one assembler of the face pipeline.

image -> detect -> 68 landmarks -> five points -> aligned crop -> quality
      -> (embedding, in one batch) -> (attributes named by the caller)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .attributes import AttributeModel
from .detector import Detector
from .errors import VisionError
from .embedder import ArcFaceEmbedder
from .geometry import align_face, five_points_from_68
from .landmarks import Landmarker68
from .quality import QualityOptions, assess_quality, masked_views, with_embedding
from .records import Face
from .selection import FaceChoice, choose, prominence_order

__all__ = ("FaceAnalyzer", "UnknownAttributeError")


class UnknownAttributeError(VisionError, ValueError):
    """An attribute was requested that the analyzer has no model for."""


class FaceAnalyzer:
    def __init__(
        self,
        detector: Detector,
        landmarker: Landmarker68,
        embedder: ArcFaceEmbedder,
        attribute_factories: Mapping[str, Callable[[], AttributeModel]],
        quality: QualityOptions,
    ) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.embedder = embedder
        self.quality_options = quality
        # Attribute models load on first use: most deployments never ask for
        # expression (28 MB) and a watcher process should not pay for it.
        self._attribute_factories = dict(attribute_factories)
        self._attribute_models: dict[str, AttributeModel] = {}
        self._lock = threading.Lock()

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self._attribute_factories)

    def check_attribute_names(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self._attribute_factories:
                raise UnknownAttributeError(
                    f"unknown attribute {name!r}; available: {', '.join(self._attribute_factories) or 'none'}"
                )

    def _attribute_model(self, name: str) -> AttributeModel:
        model = self._attribute_models.get(name)
        if model is not None:
            return model
        self.check_attribute_names([name])
        with self._lock:
            if name not in self._attribute_models:
                self._attribute_models[name] = self._attribute_factories[name]()
            return self._attribute_models[name]

    def faces_from_boxes(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[Face]:
        """Landmarks, alignment and quality for faces whose boxes are known."""
        points68 = self.landmarker.predict(image, boxes)
        kps_all = [five_points_from_68(points) for points in points68]
        aligned_all = [align_face(image, kps, self.embedder.options.input_size) for kps in kps_all]
        faces = [
            Face(box=box, det_score=float(score), landmarks68=points, kps=kps, aligned=aligned)
            for box, score, points, kps, aligned in zip(boxes, scores, points68, kps_all, aligned_all)
        ]
        poses: list[tuple[float, float] | None] = [None] * len(faces)
        if faces and self.quality_options.yaw_source == "pose_model" and "pose" in self._attribute_factories:
            self.add_attributes(image, faces, ["pose"])
            poses = [(f.attributes["pose"]["yaw"], f.attributes["pose"]["pitch"]) for f in faces]
        for face, kps, aligned, pose in zip(faces, kps_all, aligned_all, poses):
            face.quality = assess_quality(face.size_px, aligned, kps, self.quality_options, pose)
        return faces

    def detect(self, image: np.ndarray, *, max_faces: int | None = None,
               choice: FaceChoice | None = None) -> list[Face]:
        """All faces, most prominent first (vision/selection.py), with landmarks, aligned crop and quality.

        ``choice`` names one face (by index in that order, or by box): only it is returned.
        """
        detections = self.detector.detect(image)
        if len(detections) == 0:
            if choice is not None and (choice.index is not None or choice.box is not None):
                choose(detections.boxes, choice)  # raises: nothing to choose from
            return []
        height, width = image.shape[:2]
        order, ranks = prominence_order(detections.boxes, detections.scores, height, width)
        boxes, scores = detections.boxes[order], detections.scores[order]
        if choice is not None:
            picked = choose(boxes, choice)
            order = np.array([picked])
        else:
            order = np.arange(len(boxes))[:max_faces]
        faces = self.faces_from_boxes(image, boxes[order], scores[order])
        for face, position in zip(faces, order):
            face.index, face.prominence = int(position), float(ranks[position])
        # A caller deciding whether the chosen face is ambiguous needs the runner-up's rank.
        if len(ranks) > 1 and faces:
            faces[0].runner_up_prominence = float(ranks[1] if order[0] == 0 else ranks[0])
        return faces

    def embed(self, faces: Sequence[Face]) -> None:
        """Fill ``embedding`` of every face in one batched model call, and complete its quality
        with the model's own verdict (vision/quality.py: recognisable, visible)."""
        if not faces:
            return
        crops = [f.aligned for f in faces if f.aligned is not None]
        check = self.quality_options.occlusion_check
        batch = crops + [view for crop in crops for view in masked_views(crop)] if check else crops
        vectors, norms = self.embedder.embed_with_norms(np.stack(batch))
        n = len(crops)
        for i, face in enumerate(faces):
            face.embedding, face.embedding_norm = vectors[i], float(norms[i])
            consistency = None
            if check:
                masked = vectors[n + 2 * i : n + 2 * i + 2]
                consistency = float((masked @ vectors[i]).max())
            if face.quality is not None:
                face.quality = with_embedding(face.quality, float(norms[i]), consistency, self.quality_options)

    def add_attributes(self, image: np.ndarray, faces: Sequence[Face], names: Iterable[str]) -> None:
        if not faces:
            return
        for name in names:
            values = self._attribute_model(name).predict(image, faces)
            for face, value in zip(faces, values):
                face.attributes[name] = value

    def analyze(
        self,
        image: np.ndarray,
        *,
        embed: bool = True,
        attributes: Iterable[str] = (),
        max_faces: int | None = None,
        choice: FaceChoice | None = None,
    ) -> list[Face]:
        names = list(attributes)
        self.check_attribute_names(names)  # fail before doing any work
        faces = self.detect(image, max_faces=max_faces, choice=choice)
        if embed:
            self.embed(faces)
        self.add_attributes(image, faces, names)
        return faces
