"""Camera events for tests that need one without a camera (the bridge, the sightings writer)."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from events import Box, CandidateRef, DecisionRef, FaceRecognized, FaceUnknown, FrameRef, SubjectRef, encode_vector


def recognized(camera: str, track: int, subject: str = "ann", **fields: Any) -> FaceRecognized:
    """A face.recognized of ``subject`` (gallery "staff") with a crop, as a camera's worker sends it."""
    now = time.time()
    named = SubjectRef(subject, subject.title(), "staff", f"pk-{subject}")
    runner_up = CandidateRef(SubjectRef("bob", "Bob", "staff", "pk-bob"), 0.2)
    decision = DecisionRef(matched=True, reason="matched", threshold=0.3, margin=0.3,
                           best=CandidateRef(named, 0.5), runner_up=runner_up, policy={"rate": 1e-3})
    values: dict[str, Any] = dict(
        camera=camera, track=track, box=Box(10.0, 20.0, 110.0, 140.0), det_score=0.99, quality=0.8,
        frame=FrameRef(1, 0.0, now, 640, 360), analysed_frame_time=now, first_seen=now, shots=1,
        decision=decision, runner_up=runner_up, margin=0.3, threshold=0.3, model_id="test", crop="/9j/AAAA",
        subject=named, similarity=0.5)
    return FaceRecognized(**(values | fields))


def unknown(camera: str, track: int, vector: np.ndarray, crop: bytes | None, **fields: Any) -> FaceUnknown:
    """A face.unknown whose combined embedding is ``vector`` (model "synthetic"), matched by nobody."""
    now = time.time()
    decision = DecisionRef(matched=False, reason="no_candidates", threshold=0.3, margin=0.0, best=None,
                           runner_up=None, policy={"rate": 1e-3})
    values: dict[str, Any] = dict(
        camera=camera, track=track, box=Box(0.0, 0.0, 100.0, 100.0), det_score=0.99, quality=0.7,
        frame=FrameRef(track, 0.0, now, 640, 360), analysed_frame_time=now, first_seen=now - 1, shots=3,
        decision=decision, runner_up=None, margin=0.0, threshold=0.3, best_similarity=0.1,
        embedding=encode_vector(vector), model_id="synthetic",
        crop=base64.b64encode(crop).decode() if crop is not None else None)
    return FaceUnknown(**(values | fields))
