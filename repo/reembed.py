"""Re-embedding faces stored by another embedding model.

When the configured embedder changes (another file, or another ``model_id``),
the old model's vectors cannot be compared with the new one's: the indexes
leave them out (they load only the current model's vectors) and a
``Reembedder`` brings them over in the background after start, one batch per
transaction, each face from the best source kept for it. For the repo's faces
(``repo_faces``):

- the original photo and the face's five points: aligned again, as at enrolment;
- without the original (``storage.save_images: false``), the stored aligned crop;
- faces enrolled by embedding (a promoted face group) keep a face crop and no
  points: the face is detected in that crop again.

Grouping keeps its own faces and source (grouping/reembed.py). Stopping or
crashing loses nothing: the next start finds the faces still on the old model.
A face with no usable source stays on the old model, out of the indexes, and
is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from vision.analyzer import FaceAnalyzer
from vision.errors import VisionError
from vision.geometry import align_face
from vision.images import decode_image

from .service import FaceRepository
from .store import FaceRecord

__all__ = ("Reembedder", "ReembedSource", "ReembedStatus", "aligned_from_crop", "repo_faces")

log = logging.getLogger(__name__)

Row = TypeVar("Row")


@dataclass(slots=True)
class ReembedStatus:
    pending: int = 0  # faces on another model when the run started
    done: int = 0
    failed: int = 0  # no usable source: left on their old model
    running: bool = False
    error: str | None = None  # why the run stopped early (it resumes at the next start)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, frozen=True)
class ReembedSource(Generic[Row]):
    """Where one kind of stored face comes from and goes back to."""

    name: str  # for the logs
    count: Callable[[str], int]  # model id -> how many faces are on other models
    fetch: Callable[[str, str, int], list[Row]]  # (model id, after this face id, limit) -> faces in id order
    face_id: Callable[[Row], str]
    aligned: Callable[[Row], np.ndarray | None]  # the embedder's input, or None: no usable source
    commit: Callable[[list[Row], list[np.ndarray]], Awaitable[int]]  # store, index, announce; how many stored


def aligned_from_crop(analyzer: FaceAnalyzer, crop: bytes, *, is_aligned: bool) -> np.ndarray | None:
    """A stored face crop as the embedder's input: resized if it is an aligned crop, else the face found in it."""
    image = decode_image(crop)
    size = analyzer.embedder.options.input_size
    if is_aligned:
        return image if image.shape[0] == size else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    faces = analyzer.detect(image, max_faces=1)
    return faces[0].aligned if faces else None


class Reembedder:
    def __init__(self, analyzer: FaceAnalyzer, source: ReembedSource[Any], batch: int = 32) -> None:
        self.analyzer = analyzer
        self.source = source
        self.batch = batch
        self.status = ReembedStatus()

    async def run(self) -> ReembedStatus:
        source, model_id = self.source, self.analyzer.embedder.model_id
        pending = await asyncio.to_thread(source.count, model_id)
        self.status = ReembedStatus(pending=pending, running=True)
        if pending:
            log.info("%d %s were embedded by another model than %s: re-embedding them", pending, source.name, model_id)
        after = ""  # id order, so a face that cannot be re-embedded is not tried again in this run
        try:
            while rows := await asyncio.to_thread(source.fetch, model_id, after, self.batch):
                after = source.face_id(rows[-1])
                usable, crops = await asyncio.to_thread(self._aligned_crops, rows)
                if usable:
                    vectors = await asyncio.to_thread(self.analyzer.embedder.embed, np.stack(crops))
                    self.status.done += await source.commit(usable, list(vectors))
                    log.info("re-embedded %d of %d %s", self.status.done, pending, source.name)
        except Exception as exc:  # the server goes on serving the faces already re-embedded
            log.exception("re-embedding %s stopped; it resumes at the next start", source.name)
            self.status.error = str(exc)
        finally:
            self.status.running = False
        if self.status.failed:
            log.warning("%d %s could not be re-embedded (no original or crop with a face) and are not searched",
                        self.status.failed, self.source.name)
        return self.status

    def _aligned_crops(self, rows: list[Any]) -> tuple[list[Any], list[np.ndarray]]:
        usable, crops = [], []
        for row in rows:
            try:
                crop = self.source.aligned(row)
            except VisionError as exc:
                crop, reason = None, str(exc)
            else:
                reason = "no original image, crop or face in it"
            if crop is None:
                self.status.failed += 1
                log.warning("%s %s cannot be re-embedded: %s", self.source.name, self.source.face_id(row), reason)
                continue
            usable.append(row)
            crops.append(crop)
        return usable, crops


def repo_faces(repo: FaceRepository) -> ReembedSource[tuple[FaceRecord, bytes | None]]:
    """The repo's enrolled faces, each with its stored thumbnail."""

    def aligned(row: tuple[FaceRecord, bytes | None]) -> np.ndarray | None:
        record, thumbnail = row
        points = np.asarray(record.landmarks, np.float32)
        has_points = points.shape == (5, 2)
        original = repo.images.get(record.image_key) if record.image_key else None
        if original is not None and has_points:
            return align_face(decode_image(original), points, repo.analyzer.embedder.options.input_size)
        if thumbnail is None:
            return None
        # With points, the thumbnail is the aligned crop itself; without, a face crop.
        return aligned_from_crop(repo.analyzer, thumbnail, is_aligned=has_points)

    async def commit(rows: list[tuple[FaceRecord, bytes | None]], vectors: list[np.ndarray]) -> int:
        return await repo.replace_embeddings([record for record, _ in rows], vectors)

    return ReembedSource("faces", repo.store.count_faces_of_other_models, repo.store.faces_of_other_models,
                         lambda row: row[0].id, aligned, commit)
