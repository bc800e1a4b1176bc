from __future__ import annotations

import numpy as np

from vision.geometry import ARCFACE_112, align_face, crop_box, iou_matrix, nms, similarity_transform


def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = np.deg2rad(17.0), 2.5, np.array([40.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_112.astype(np.float64)
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-4)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-3)


def test_align_face_puts_points_on_the_template() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    kps = ARCFACE_112 * 2 + 50  # the template, scaled and moved
    for x, y in kps.astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    aligned = align_face(image, kps)
    assert aligned.shape == (112, 112, 3)
    for x, y in ARCFACE_112.round().astype(int):
        assert aligned[y, x].max() > 100


def test_crop_box_pads_outside_the_image_and_reports_region() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop, region = crop_box(image, np.array([-20, -20, 20, 20], np.float32), 40, 40)
    np.testing.assert_allclose(region, [-20, -20, 40, 40])
    assert crop[:15, :15].max() == 0  # outside: black, not shifted
    assert crop[25:, 25:].min() == 200


def test_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    iou = iou_matrix(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert 0.6 < iou[0, 1] < 0.7
    assert iou[0, 2] == 0
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2]
    assert iou_matrix(np.zeros((0, 4), np.float32), boxes).shape == (0, 3)


def test_nms_drops_a_box_inside_a_better_one() -> None:
    face = np.array([311, 69, 583, 486], np.float32)  # measured on deepface img20.jpg
    lower_half = np.array([372, 343, 573, 489], np.float32)
    boxes, scores = np.stack([face, lower_half]), np.array([1.0, 0.99], np.float32)
    assert iou_matrix(boxes[:1], boxes[1:])[0, 0] < 0.3  # plain NMS keeps both
    assert nms(boxes, scores, 0.3).tolist() == [0, 1]
    assert nms(boxes, scores, 0.3, containment=0.7).tolist() == [0]
