"""Re-embedding the faces stored by another embedding model.

When the configured embedder changes (another file, or another ``model_id``),
the old model's vectors cannot be compared with the new one's: the indexes
leave them out (``RepoStore.iter_gallery_embeddings`` filters by model id) and
this task brings them over in the background after start, one batch per
transaction, each face from the best source kept for it:

- the original photo and the face's five points: aligned again, as at enrolment;
- without the original (``storage.save_images: false``), the stored aligned crop;
- faces enrolled by embedding (a promoted face group) keep a face crop and no
  points: the face is detected in that crop again.

Stopping or crashing loses nothing: the next start finds the faces still on
the old model. A face with no usable source stays on the old model, out of
the indexes, and is logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from vision.errors import VisionError
from vision.geometry import align_face
from vision.images import decode_image

from .service import FaceRepository
from .store import FaceRecord

__all__ = ("Reembedder", "ReembedStatus")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReembedStatus:
    pending: int = 0  # faces on another model when the run started
    done: int = 0
    failed: int = 0  # no usable source: left on their old model
    running: bool = False
    error: str | None = None  # why the run stopped early (it resumes at the next start)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Reembedder:
    def __init__(self, repo: FaceRepository, batch: int = 32) -> None:
        self.repo = repo
        self.batch = batch
        self.status = ReembedStatus()

    async def run(self) -> ReembedStatus:
        store, model_id = self.repo.store, self.repo.analyzer.embedder.model_id
        pending = await asyncio.to_thread(store.count_faces_of_other_models, model_id)
        self.status = ReembedStatus(pending=pending, running=True)
        if pending:
            log.info("%d faces were embedded by another model than %s: re-embedding them", pending, model_id)
        after = ""  # id order, so a face that cannot be re-embedded is not tried again in this run
        try:
            while rows := await asyncio.to_thread(store.faces_of_other_models, model_id, after, self.batch):
                after = rows[-1][0].id
                records, crops = await asyncio.to_thread(self._aligned_crops, rows)
                if records:
                    vectors = await asyncio.to_thread(self.repo.analyzer.embedder.embed, np.stack(crops))
                    self.status.done += await self.repo.replace_embeddings(records, list(vectors))
                    log.info("re-embedded %d of %d faces", self.status.done, pending)
        except Exception as exc:  # the server goes on serving the faces already re-embedded
            log.exception("re-embedding stopped; it resumes at the next start")
            self.status.error = str(exc)
        finally:
            self.status.running = False
        if self.status.failed:
            log.warning("%d faces could not be re-embedded (no original or crop with a face) and are not searched",
                        self.status.failed)
        return self.status

    def _aligned_crops(self, rows: list[tuple[FaceRecord, bytes | None]]) -> tuple[list[FaceRecord], list[np.ndarray]]:
        records, crops = [], []
        for record, thumbnail in rows:
            try:
                crop = self._aligned_crop(record, thumbnail)
            except VisionError as exc:
                crop, reason = None, str(exc)
            else:
                reason = "no original image, crop or face in it"
            if crop is None:
                self.status.failed += 1
                log.warning("face %s cannot be re-embedded: %s", record.id, reason)
                continue
            records.append(record)
            crops.append(crop)
        return records, crops

    def _aligned_crop(self, record: FaceRecord, thumbnail: bytes | None) -> np.ndarray | None:
        analyzer = self.repo.analyzer
        size = analyzer.embedder.options.input_size
        points = np.asarray(record.landmarks, np.float32)
        has_points = points.shape == (5, 2)
        original = self.repo.images.get(record.image_key) if record.image_key else None
        if original is not None and has_points:
            return align_face(decode_image(original), points, size)
        if thumbnail is None:
            return None
        image = decode_image(thumbnail)
        if has_points:  # the thumbnail is the aligned crop itself
            return image if image.shape[0] == size else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        faces = analyzer.detect(image, max_faces=1)
        return faces[0].aligned if faces else None
