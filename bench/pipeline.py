#!/usr/bin/env python3
"""Speed of the face pipeline per stage, on a 640x480 frame with one real face.

Prints median and p95 milliseconds for: detection per frame; landmarks +
alignment per face; embedding per face at batch 1 and batch 8; the pose model
(the quality gate's yaw); end to end for the frame (detect -> landmarks ->
align -> quality -> embed) with the default quality gate (pose model) and with
landmark yaw; and, in the same run, the embedder without two of its speed-ups
(denormals not flushed; the published PRelu graph). ``--compare`` also runs end to end with other ONNX Runtime
thread settings in the same run and prints the ratios.

Last line: ``pipeline frame_ms=<median end to end> face_ms=<median per-face work>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, add_config_arg, make_analyzer, make_config, pct

from facewatch.analyzer_setup import model_path
from facewatch.config import FacewatchConfig
from vision.analyzer import FaceAnalyzer
from vision.images import decode_image


def timed(fn: Callable[[], object], repeats: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def line(name: str, samples: list[float], per: int = 1) -> float:
    med, p95 = pct(samples, 50) / per, pct(samples, 95) / per
    print(f"  {name:<44} median {med:7.2f} ms   p95 {p95:7.2f} ms")
    return med


def frame_640x480() -> np.ndarray:
    image = decode_image((DATA / "faces" / "probe" / "obama-480p.jpg").read_bytes())  # 853x480
    x0 = (image.shape[1] - 640) // 2
    return np.ascontiguousarray(image[:, x0 : x0 + 640])


def stages(cfg: FacewatchConfig, analyzer: FaceAnalyzer, frame: np.ndarray, repeats: int) -> dict[str, float]:
    detections = analyzer.detector.detect(frame)
    if len(detections) != 1:
        raise SystemExit(f"expected one face in the benchmark frame, found {len(detections)}")
    boxes, scores = detections.boxes, detections.scores
    faces = analyzer.faces_from_boxes(frame, boxes, scores)
    assert faces[0].aligned is not None
    aligned1 = np.stack([faces[0].aligned])
    aligned8 = np.repeat(aligned1, 8, axis=0)
    pose = analyzer._attribute_model("pose")
    res = {}
    res["detect"] = line("detection per 640x480 frame", timed(lambda: analyzer.detector.detect(frame), repeats))
    from vision.geometry import align_face, five_points_from_68

    def landmarks_align() -> None:
        points = analyzer.landmarker.predict(frame, boxes)
        align_face(frame, five_points_from_68(points[0]))

    res["landmarks"] = line("landmarks + alignment per face", timed(landmarks_align, repeats))
    res["embed1"] = line("embedding per face, batch 1", timed(lambda: analyzer.embedder.embed(aligned1), repeats))
    res["embed8"] = line("embedding per face, batch 8", timed(lambda: analyzer.embedder.embed(aligned8), repeats // 4),
                         per=8)
    res["pose"] = line("pose model per face (quality yaw)", timed(lambda: pose.predict(frame, faces), repeats))
    res["embed1_denormals"] = denormals_kept(analyzer, aligned1, repeats // 4)
    res["embed1_prelu"] = prelu_kept(analyzer, aligned1, model_path(cfg, cfg.models.embedder.path), repeats // 4)
    return res


def prelu_kept(analyzer: FaceAnalyzer, aligned: np.ndarray, path: Path, repeats: int) -> float:
    """Embedding with the published graph's PRelu nodes (no rewrite; vision/graph_patch.py), same threads."""
    import onnxruntime as ort

    from vision.blob import to_blob

    o = analyzer.embedder.options
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    blob = to_blob(aligned, o.mean, o.std, rgb=o.rgb)
    name = session.get_inputs()[0].name
    samples = timed(lambda: session.run(None, {name: blob}), repeats)
    return line("embedding per face, batch 1, PRelu NOT rewritten", samples)


def denormals_kept(analyzer: FaceAnalyzer, aligned: np.ndarray, repeats: int) -> float:
    """Embedding in a thread with FTZ/DAZ cleared, bypassing ModelSession's flush: what it costs without."""
    import threading

    import onnxruntime as ort

    from vision.blob import to_blob
    from vision.denormals import set_flush_denormals

    embedder = analyzer.embedder
    o = embedder.options
    blob = to_blob(aligned, o.mean, o.std, rgb=o.rgb)
    name = embedder.input_name
    box: list[list[float]] = []

    def run() -> None:
        set_flush_denormals(False)  # threads inherit the flags of the thread that started them
        box.append(timed(lambda: ort.InferenceSession.run(embedder.session, None, {name: blob}), repeats, warmup=3))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return line("embedding per face, batch 1, denormals NOT flushed", box[0])


def end_to_end(analyzer: FaceAnalyzer, frame: np.ndarray, repeats: int, label: str) -> float:
    return line(f"end to end, one-face frame ({label})", timed(lambda: analyzer.analyze(frame), repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--compare", action="store_true", help="also time other thread settings")
    args = parser.parse_args()
    frame = frame_640x480()
    cfg = make_config(args.config)
    analyzer = make_analyzer(cfg)
    device = analyzer.embedder.session.get_providers()[0]
    print(f"pipeline on a {frame.shape[1]}x{frame.shape[0]} frame, device {device}, "
          f"{args.repeats} runs after warm-up")
    res = stages(cfg, analyzer, frame, args.repeats)
    frame_ms = end_to_end(analyzer, frame, args.repeats, "quality yaw: pose model, default")
    fast = make_analyzer(make_config(args.config, quality__yaw_source="landmarks"))
    fast_ms = end_to_end(fast, frame, args.repeats, "quality yaw: landmarks")
    if args.compare:
        for threads, spin in ((2, False), (2, True), (0, True)):
            other = make_analyzer(make_config(args.config, runtime__intra_op_threads=threads,
                                              runtime__allow_spinning=spin))
            ms = end_to_end(other, frame, args.repeats, f"intra_op_threads={threads} spinning={spin}")
            print(f"    ratio to default settings: {ms / frame_ms:.2f}")
    print(f"  flush-to-zero speed-up on the embedder: {res['embed1_denormals'] / res['embed1']:.2f}x")
    print(f"  PRelu rewrite speed-up on the embedder: {res['embed1_prelu'] / res['embed1']:.2f}x")
    face_ms = res["landmarks"] + res["embed1"] + res["pose"]
    print(f"  per-face work (landmarks+align, pose, embedding): {face_ms:.2f} ms; "
          f"without the pose model: {res['landmarks'] + res['embed1']:.2f} ms; landmark-yaw frame {fast_ms:.2f} ms")
    print(f"pipeline frame_ms={frame_ms:.2f} face_ms={face_ms:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
