"""Re-embedding grouped faces stored by another embedding model (see repo/reembed.py).

A grouped face keeps only a crop: an uploaded image's face keeps its aligned
crop, a camera's face the crop of the face.unknown event, in which the face is
detected again. Faces stay in the groups the old model put them in.
"""

from __future__ import annotations

import numpy as np

from repo.reembed import ReembedSource, aligned_from_crop

from .service import GroupingService
from .store import GroupFace

__all__ = ("grouped_faces",)

Row = tuple[str, GroupFace, bytes | None]  # tenant, face, crop


def grouped_faces(service: GroupingService) -> ReembedSource[Row]:
    def aligned(row: Row) -> np.ndarray | None:
        _, face, crop = row
        if crop is None:
            return None
        return aligned_from_crop(service.repo.analyzer, crop, is_aligned=face.source == "upload")

    async def commit(rows: list[Row], vectors: list[np.ndarray]) -> int:
        return await service.replace_embeddings([(tenant, face) for tenant, face, _ in rows], vectors)

    return ReembedSource("grouped faces", service.store.count_faces_of_other_models,
                         service.store.faces_of_other_models, lambda row: row[1].id, aligned, commit)
