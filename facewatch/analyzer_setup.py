"""Builds the face pipeline from the configuration (config -> vision options)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from vision.analyzer import FaceAnalyzer
from vision.attributes import (
    AgeModel,
    AttributeModel,
    ExpressionModel,
    EyesModel,
    GenderModel,
    LivenessModel,
    PoseModel,
)
from vision.detector import Detector, DetectorOptions, UltraLightDetector
from vision.embedder import ArcFaceEmbedder, EmbedderOptions
from vision.errors import ModelLoadError
from vision.landmarks import LandmarkOptions, Landmarker68
from vision.pack import DEFAULT_PACK, sha256_file
from vision.quality import QualityOptions
from vision.runtime import RuntimeOptions, SessionFactory

from .config import FacewatchConfig

__all__ = ("build_analyzer", "model_path", "check_models")

_ATTRIBUTE_CLASSES: dict[str, type] = {
    model.name: model for model in (AgeModel, GenderModel, PoseModel, LivenessModel, ExpressionModel, EyesModel)
}


def model_path(cfg: FacewatchConfig, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else cfg.models_dir(DEFAULT_PACK.name) / path


def check_models(cfg: FacewatchConfig) -> None:
    """Fail at start, with the fix in the message, when a model file is missing."""
    needed = [cfg.models.landmarks.path, cfg.models.embedder.path, *cfg.models.attributes.values()]
    if cfg.models.detector.backend == "onnx":
        needed.append(cfg.models.detector.path)
    missing = [str(model_path(cfg, n)) for n in needed if not model_path(cfg, n).is_file()]
    if missing:
        raise ModelLoadError(
            f"model file(s) missing: {', '.join(missing)}; run 'facewatch models fetch' "
            "(or set models.* in the config to your own ONNX files)"
        )


def _detector(cfg: FacewatchConfig, sessions: SessionFactory) -> Detector:
    d = cfg.models.detector
    options = DetectorOptions(
        input_width=d.input_width, input_height=d.input_height, mean=d.mean, std=d.std, rgb=d.rgb,
        score_threshold=d.score_threshold, nms_iou=d.nms_iou, nms_containment=d.nms_containment,
        tile_min_side=d.tile_min_side,
        tile_overlap=d.tile_overlap, min_face_px=d.min_face_px,
    )
    if d.backend == "mediapipe":
        from vision.mediapipe_detector import MediaPipeDetector

        return MediaPipeDetector(model_path(cfg, d.path), options)
    return UltraLightDetector(sessions.create(model_path(cfg, d.path)), options)


def _attribute_factory(cls: type, path: Path, sessions: SessionFactory) -> AttributeModel:
    model: AttributeModel = cls(sessions.create(path))
    return model


def build_analyzer(cfg: FacewatchConfig) -> FaceAnalyzer:
    check_models(cfg)
    r = cfg.runtime
    sessions = SessionFactory(
        RuntimeOptions(device=r.device, intra_op_threads=r.intra_op_threads,
                       inter_op_threads=r.inter_op_threads, allow_spinning=r.allow_spinning)
    )
    lm = cfg.models.landmarks
    landmarker = Landmarker68(
        sessions.create(model_path(cfg, lm.path)), LandmarkOptions(input_size=lm.input_size, scale=lm.scale)
    )
    e = cfg.models.embedder
    embedder_file = model_path(cfg, e.path)
    model_id = e.model_id or f"{embedder_file.stem}-{sha256_file(embedder_file)[:12]}"
    embedder = ArcFaceEmbedder(
        sessions.create(embedder_file),
        EmbedderOptions(input_size=e.input_size, mean=e.mean, std=e.std, rgb=e.rgb, flip=e.flip, max_batch=e.max_batch),
        model_id,
    )
    factories: dict[str, Callable[[], AttributeModel]] = {
        name: partial(_attribute_factory, _ATTRIBUTE_CLASSES[name], model_path(cfg, file), sessions)
        for name, file in cfg.models.attributes.items()
    }
    q = cfg.quality
    quality = QualityOptions(
        min_size_px=q.min_size_px, good_size_px=q.good_size_px, blur_sharpness=q.blur_sharpness,
        sharp_sharpness=q.sharp_sharpness, frontal_yaw_deg=q.frontal_yaw_deg, profile_yaw_deg=q.profile_yaw_deg,
        yaw_source=q.yaw_source, reference_norm=q.reference_norm, low_norm_ratio=q.low_norm_ratio,
        high_norm_ratio=q.high_norm_ratio, occlusion_check=q.occlusion_check,
        visible_consistency=q.visible_consistency, covered_consistency=q.covered_consistency,
    )
    return FaceAnalyzer(_detector(cfg, sessions), landmarker, embedder, factories, quality)
