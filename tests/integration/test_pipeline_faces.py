"""The face pipeline on real photos from ../shared/data."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facewatch.config import FacewatchConfig
from vision.analyzer import FaceAnalyzer, UnknownAttributeError
from vision.graph_patch import load_patched
from vision.detector import DetectorOptions, UltraLightDetector

pytestmark = [pytest.mark.models, pytest.mark.data]

LoadImage = Callable[[str], np.ndarray]


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("faces/probe/two_people.jpg", 2),
        ("group/multiface.jpg", 6),
        ("group/couple.jpg", 2),
        ("faces/probe/kit_with_rose.jpg", 2),
        ("faces/probe/obama_and_biden.jpg", 3),  # and the girl in the corner
    ],
)
def test_face_counts(analyzer: FaceAnalyzer, load_image: LoadImage, relative: str, expected: int) -> None:
    faces = analyzer.detect(load_image(relative))
    assert len(faces) == expected
    for face in faces:
        assert face.det_score >= analyzer.detector.options.score_threshold
        assert face.kps is not None and face.kps.shape == (5, 2)
        x1, y1, x2, y2 = face.box
        # The five points sit inside (or at the edge of) their own box.
        assert np.all(face.kps[:, 0] > x1 - 0.1 * (x2 - x1)) and np.all(face.kps[:, 0] < x2 + 0.1 * (x2 - x1))

# A fixed cosine at which these photos separate (the pre-calibration default); the decision
# rule itself (rates, gallery size, quality) is tested in test_repo_api.py and test_decision.py.
SEPARATING_COSINE = 0.278


def test_blank_and_tiny_images_have_no_faces(analyzer: FaceAnalyzer) -> None:
    assert analyzer.analyze(np.zeros((480, 640, 3), np.uint8)) == []
    assert analyzer.analyze(np.full((2, 2, 3), 255, np.uint8)) == []
    with pytest.raises(ValueError):
        analyzer.analyze(np.zeros((10, 10), np.uint8))


def _paste_small_face(load_image: LoadImage, face_px: int) -> np.ndarray:
    """A 1280x720 frame of texture with one real face scaled to about ``face_px``."""
    photo = load_image("faces/enroll/obama/obama.jpg")
    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.integers(60, 200, (720, 1280, 3), dtype=np.uint8), (0, 0), 6)
    h, w = photo.shape[:2]
    # obama.jpg's face is roughly a third of the photo's width.
    scale = face_px / (w / 3.0)
    small = cv2.resize(photo, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    frame[300 : 300 + small.shape[0], 700 : 700 + small.shape[1]] = small
    return frame


def test_tiling_finds_small_faces_in_720p(analyzer: FaceAnalyzer, load_image: LoadImage) -> None:
    frame = _paste_small_face(load_image, 38)
    tiled = analyzer.detector.detect(frame)
    assert isinstance(analyzer.detector, UltraLightDetector)
    base = analyzer.detector.options
    no_tiles = UltraLightDetector(analyzer.detector.session, DetectorOptions(
        score_threshold=base.score_threshold, nms_iou=base.nms_iou, tile_min_side=0))
    assert len(tiled) == 1, tiled
    assert 25 < min(tiled.boxes[0, 2] - tiled.boxes[0, 0], tiled.boxes[0, 3] - tiled.boxes[0, 1]) < 60
    assert len(no_tiles.detect(frame)) == 0
    # One tile holding the face is enough (the watcher scans one per frame, in turn); none is not.
    assert len(analyzer.detector.detect(frame, tiles=[3])) == 1
    assert len(analyzer.detector.detect(frame, tiles=[])) == 0


def _largest_embedding(analyzer: FaceAnalyzer, image: np.ndarray) -> np.ndarray:
    faces = analyzer.analyze(image, max_faces=1)
    assert faces, "no face found"
    assert faces[0].embedding is not None
    return faces[0].embedding


def _enrolled(analyzer: FaceAnalyzer, shared_data: Path, load_image: LoadImage) -> dict[str, list[np.ndarray]]:
    people: dict[str, list[np.ndarray]] = {}
    for person_dir in sorted((shared_data / "faces" / "enroll").iterdir()):
        for image_file in sorted(person_dir.iterdir()):
            people.setdefault(person_dir.name, []).append(
                _largest_embedding(analyzer, load_image(str(image_file.relative_to(shared_data))))
            )
    return people


def test_same_person_above_and_different_below_threshold(
    config: FacewatchConfig, analyzer: FaceAnalyzer, shared_data: Path, load_image: LoadImage
) -> None:
    threshold = SEPARATING_COSINE
    people = _enrolled(analyzer, shared_data, load_image)
    assert len(people) == 6
    for name, vectors in people.items():
        for a, b in itertools.combinations(vectors, 2):
            assert float(a @ b) >= threshold, name
    for (name_a, va), (name_b, vb) in itertools.combinations(people.items(), 2):
        for a in va:
            for b in vb:
                assert float(a @ b) < threshold, (name_a, name_b)


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ("obama1.jpg", {"obama"}),
        ("alex_lacamoire1.jpg", {"alex_lacamoire"}),
        ("johnsnow_test1.jpg", {"kit_harington"}),
        ("obama-480p.jpg", {"obama"}),
        ("kit_with_rose.jpg", {"kit_harington", "rose_leslie"}),
        ("obama_and_biden.jpg", {"obama", "biden"}),
        ("two_people.jpg", {"obama", "biden"}),
    ],
)
def test_probes_identify_the_right_people(
    config: FacewatchConfig, analyzer: FaceAnalyzer, shared_data: Path, load_image: LoadImage, probe: str,
    expected: set[str]
) -> None:
    people = _enrolled(analyzer, shared_data, load_image)
    found = set()
    for face in analyzer.analyze(load_image(f"faces/probe/{probe}")):
        assert face.embedding is not None
        best_name, best_sim = max(
            ((name, max(float(face.embedding @ v) for v in vectors)) for name, vectors in people.items()),
            key=lambda item: item[1],
        )
        if best_sim >= SEPARATING_COSINE:
            found.add(best_name)
    assert found == expected


def test_embedding_batch_equals_single(analyzer: FaceAnalyzer, load_image: LoadImage) -> None:
    faces = analyzer.detect(load_image("group/multiface.jpg"))
    crops = np.stack([f.aligned for f in faces if f.aligned is not None])
    assert len(crops) == 6
    batched = analyzer.embedder.embed(crops)
    singles = np.concatenate([analyzer.embedder.embed(c[None]) for c in crops])
    assert batched.shape == (6, 512)
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["age", "gender", "pose", "liveness", "expression", "eyes"])
def test_attribute_batch_equals_single(analyzer: FaceAnalyzer, load_image: LoadImage, name: str) -> None:
    image = load_image("group/multiface.jpg")
    faces = analyzer.detect(image)
    model = analyzer._attribute_model(name)
    together = model.predict(image, faces)
    one_by_one = [model.predict(image, [f])[0] for f in faces]
    assert together == one_by_one


def test_landmarks_batch_equals_single(analyzer: FaceAnalyzer, load_image: LoadImage) -> None:
    image = load_image("group/multiface.jpg")
    boxes = analyzer.detector.detect(image).boxes
    together = analyzer.landmarker.predict(image, boxes)
    singles = np.concatenate([analyzer.landmarker.predict(image, b[None]) for b in boxes])
    np.testing.assert_allclose(together, singles, atol=1e-3)


@pytest.mark.parametrize(
    ("relative", "gender", "eyes_clearly_open"),
    [
        ("faces/enroll/obama/obama.jpg", "male", True),
        # Smiling with narrowed eyes: the eye model calls his left eye closed.
        ("faces/enroll/biden/biden2.jpg", "male", False),
        ("faces/enroll/kit_harington/john1.jpeg", "male", True),
        ("faces/enroll/rose_leslie/img1.jpg", "female", True),
        ("faces/enroll/rose_leslie/img2.jpg", "female", True),
    ],
)
def test_attributes_on_known_people(
    analyzer: FaceAnalyzer, load_image: LoadImage, relative: str, gender: str, eyes_clearly_open: bool
) -> None:
    (face,) = analyzer.analyze(load_image(relative), max_faces=1,
                               attributes=["age", "gender", "pose", "liveness", "expression", "eyes"])
    attrs = face.attributes
    assert attrs["gender"]["value"] == gender
    assert 18 <= attrs["age"] <= 90  # adults, all of them
    assert abs(attrs["pose"]["yaw"]) < 30  # enrolment photos face the camera
    if eyes_clearly_open:
        assert attrs["eyes"]["left_open"] and attrs["eyes"]["right_open"]
    assert 0.0 <= attrs["liveness"]["score"] <= 1.0
    assert attrs["expression"]["value"] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def test_unknown_attribute_fails_before_work(analyzer: FaceAnalyzer, load_image: LoadImage) -> None:
    with pytest.raises(UnknownAttributeError, match="unknown attribute 'beauty'"):
        analyzer.analyze(load_image("faces/probe/obama1.jpg"), attributes=["beauty"])


def test_quality_refuses_profile_and_tiny_faces(config: FacewatchConfig, analyzer: FaceAnalyzer,
                                                shared_data: Path) -> None:
    import av

    min_score = config.quality.min_score
    frames = {}
    with av.open(str(shared_data / "video" / "short_hamilton_clip.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in (20, 100):
                frames[index] = frame.to_ndarray(format="bgr24")
            if index > 100:
                break
    (profile,) = analyzer.detect(frames[20])  # a true profile close-up
    assert profile.quality is not None and profile.quality.score < min_score
    assert abs(profile.quality.yaw_deg) > 50
    (frontal,) = analyzer.detect(frames[100])  # Lin-Manuel Miranda facing the camera
    assert frontal.quality is not None and frontal.quality.score >= min_score
    tiny = cv2.resize(frames[100], None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    for face in analyzer.detect(tiny):
        assert face.quality is not None and face.quality.score < min_score


@pytest.mark.parametrize("model", ["fr_feature.onnx", "fr_liveness.onnx"])
def test_prelu_rewrite_keeps_real_outputs(models_dir: Path, model: str, analyzer: FaceAnalyzer,
                                          load_image: LoadImage) -> None:
    """The rewritten PReLUs (vision/graph_patch.py) give the published model's outputs on real faces."""
    faces = analyzer.detect(load_image("group/multiface.jpg"))
    size = 112 if model == "fr_feature.onnx" else 128
    crops = np.stack([cv2.resize(f.aligned, (size, size)) for f in faces if f.aligned is not None])
    # One normalisation for both models: the point is equal outputs on real face pixels.
    blob = ((crops[..., ::-1].astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()
    published = ort.InferenceSession(str(models_dir / model), providers=["CPUExecutionProvider"])
    patched = ort.InferenceSession(load_patched(models_dir / model), providers=["CPUExecutionProvider"])
    assert "PRelu" in {n.op_type for n in onnx.load(str(models_dir / model)).graph.node}
    name = published.get_inputs()[0].name
    for row in blob:  # the published graph takes batch 1 only
        expected = published.run(None, {name: row[None]})
        got = patched.run(None, {name: row[None]})
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
