"""FaceRepository: what the repo does, independent of transport.

Enrol faces into subjects of galleries, detect, verify, identify. The database
is the truth; the in-memory indexes (a GalleryMirror) follow every committed
change, this node's and every other node's, in each gallery's version order
(repo/sync.py); every change is published on /topic/repo.events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from events import (
    FaceAdded, FaceRemoved, GalleryRemoved, GalleryRenamed, NegativeAdded, NegativeRemoved, RepoEvent, SubjectMerged,
    SubjectRemoved, SubjectUpdated, encode_vector,
)
from api.errors import BadParam, Conflict, NoFace, NotFound, PayloadTooLarge, UnsupportedMedia
from vision.analyzer import FaceAnalyzer, UnknownAttributeError
from vision.errors import ImageDecodeError, ImageTooLargeError, ImageTooSmallError
from vision.records import Face
from vision.selection import FaceChoice, FaceChoiceError, ambiguous

from .analysis import ImageLimits, analyze_in_worker, analyze_source
from .calibration import Calibration
from .decision import CANDIDATES, Candidate, Decision, Policy, decide
from .events import REPO_EVENTS, EventPublisher
from .images import ImageStore, photo_hash, thumbnail_jpeg
from .index import GalleryIndex, Match, NegativeIndex, SearchOptions
from .mirror import GalleryMirror
from .store import FaceRecord, Gallery, NegativeRecord, RepoStore, Subject
from .sync import wait_applied

__all__ = ("RepoOptions", "FaceRepository", "Identification", "EmbeddedFace")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class RepoOptions:
    """``policy``: the default decision; ``rates``: the named presets (FPIR for 1:N, FAR for 1:1)."""

    policy: Policy
    rates: dict[str, float]
    calibration: Calibration | None
    min_face_px: float = 40.0
    min_quality: float = 0.5  # enrolment's gate (matching's is policy.min_quality)
    max_body_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    save_images: bool = True
    search: SearchOptions = SearchOptions()
    # A change is answered once this node's index holds it, so a caller reads its own writes; the
    # index may first wait for another node's earlier change (its event, or a reload): this long at most.
    own_change_wait_s: float = 5.0


@dataclass(slots=True, frozen=True)
class EmbeddedFace:
    """A face analysed elsewhere (a watcher's best shot, a face group), enrolled by its embedding."""

    embedding: np.ndarray
    model_id: str
    quality: float
    image: bytes | None  # a JPEG of the face, kept as its image and thumbnail


@dataclass(slots=True, frozen=True)
class Identification:
    """One face of an identify probe: its candidates (best first; at least those the decision weighed)
    and the decision over them."""

    face: Face
    candidates: list[tuple[Match, Subject, Gallery]]
    decision: Decision  # candidate keys are face ids


class FaceRepository:
    def __init__(self, store: RepoStore, analyzer: FaceAnalyzer, images: ImageStore, options: RepoOptions,
                 events: EventPublisher, pool: Executor | None = None) -> None:
        """``pool``: analysis worker processes (repo/analysis.py); None analyses in threads with ``analyzer``."""
        self.store = store
        self.analyzer = analyzer
        self.pool = pool
        self.images = images
        self.options = options
        self.events = events
        self.mirror = GalleryMirror(store, analyzer.embedder.dim, analyzer.embedder.model_id, options.search)

    # -- lifecycle ---------------------------------------------------------------
    def load_indexes(self) -> int:
        """Build every gallery's index from the database; returns the face count."""
        return self.mirror.load()

    async def warm_up(self, workers: int) -> None:
        """Start the analysis processes now (each loads its models), not on the first request."""
        if self.pool is not None:
            blank = np.zeros((64, 64, 3), np.uint8)
            await asyncio.gather(*(self.analyze(blank) for _ in range(workers)))

    def face_count(self, gallery_id: str) -> int:
        return len(self._index(gallery_id))

    def indexed_version(self, gallery_id: str) -> int:
        """The gallery version this node's index holds."""
        return self.mirror.applied(gallery_id)

    def _index(self, gallery_id: str) -> GalleryIndex:
        return self.mirror.index(gallery_id)

    def _negatives(self, gallery_id: str) -> NegativeIndex:
        return self.mirror.negatives(gallery_id)

    def _event(self, kind: type[RepoEvent], gallery: Gallery, version: int | None = None, **fields: Any) -> None:
        """Apply a committed change to this node's index and announce it to the others."""
        event = kind(tenant=gallery.tenant_id, gallery=gallery.name, gallery_id=gallery.id, version=version, **fields)
        self.mirror.apply(event)
        self.events.publish(REPO_EVENTS, event)

    async def _indexed(self, gallery_id: str, version: int) -> None:
        """Until this node's index holds ``version`` of the gallery (it may wait for an earlier
        change of another node), for ``own_change_wait_s`` at most."""
        if not await wait_applied(self.mirror.when_applied, self.mirror.forget, gallery_id, version,
                                  self.options.own_change_wait_s):
            log.warning("gallery %s: version %d not indexed within %.1fs (a reload is on its way)", gallery_id,
                        version, self.options.own_change_wait_s)

    # -- thresholds and images -----------------------------------------------------
    def policy(self, value: Any) -> Policy:
        """The ``threshold`` parameter: absent (the configured default), a preset's rate, or a fixed cosine."""
        default = self.options.policy
        if value is None or value == "":
            return default
        if isinstance(value, str) and value in self.options.rates:
            return Policy(rate=self.options.rates[value], margin=default.margin, min_quality=default.min_quality)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BadParam(f"threshold must be a number or one of {sorted(self.options.rates)}",
                           "threshold") from None
        if not -1.0 <= number <= 1.0:
            raise BadParam("threshold must be between -1 and 1", "threshold")
        return Policy(rate=None, threshold=number, margin=default.margin, min_quality=default.min_quality)

    def threshold_for(self, policy: Policy, quality: float, comparisons: int) -> float:
        try:
            return policy.threshold_for(self.options.calibration, quality, comparisons)
        except ValueError as exc:  # a rate with no calibration of this model
            raise BadParam(f"{exc}: give a numeric threshold", "threshold") from None

    async def analyze(self, source: bytes | np.ndarray, *, param: str = "file", attributes: Sequence[str] = (),
                      max_faces: int | None = None, embed: bool = True,
                      choice: FaceChoice | None = None) -> list[Face]:
        """Faces of an image (its encoded bytes, decoded where the analysis runs, or an array), most
        prominent first; ``choice`` names one face (then only it is returned). ``param`` names the
        image in errors (too large, not an image)."""
        try:
            self.analyzer.check_attribute_names(attributes)
        except UnknownAttributeError as exc:  # the model pack lacks one
            raise BadParam(str(exc), "face_plugins") from None
        limits = ImageLimits(self.options.max_body_bytes, self.options.max_image_pixels)
        try:
            if self.pool is not None:
                return await asyncio.get_running_loop().run_in_executor(
                    self.pool, analyze_in_worker, source, limits, embed, tuple(attributes), max_faces, choice)
            return await asyncio.to_thread(analyze_source, self.analyzer, source, limits, embed, tuple(attributes),
                                           max_faces, choice)
        except ImageTooLargeError as exc:
            raise PayloadTooLarge(str(exc), param) from None
        except ImageTooSmallError as exc:  # an image, but no face can be in it
            raise NoFace(str(exc), param) from None
        except ImageDecodeError as exc:
            raise UnsupportedMedia(str(exc), param) from None
        except FaceChoiceError as exc:
            # The request was well formed; the image holds no face where it says (422, as NO_FACE is).
            suffix = "2" if param.endswith("2") else ""  # verify's image2 has face_index2 / face_box2
            raise NoFace(str(exc), ("face_index" if choice and choice.index is not None else "face_box") + suffix
                         ) from None

    # -- faces ----------------------------------------------------------------------
    async def add_faces(self, gallery: Gallery, subject: Subject, data: bytes, *, all_faces: bool = False,
                        force: bool = False, job_item: str | None = None,
                        choice: FaceChoice | None = None) -> list[FaceRecord]:
        """Enrol the face ``choice`` names, else the most prominent one (or all faces) of one image.

        A photo with two comparable faces is refused unless the caller names
        one: enrolling the wrong person would name them for ever after.

        Nothing is half-written: the image file is stored before the rows and
        removed again if they fail; the index and events follow the commit.
        ``job_item`` marks the rows as a bulk job's item, in the same transaction.
        """
        faces = await self.analyze(data, max_faces=None if all_faces else 1, choice=None if all_faces else choice)
        if not faces:
            raise NoFace("no face found in the image")
        first = faces[0]
        if not all_faces and choice is None and ambiguous(first.prominence, first.runner_up_prominence):
            raise Conflict("the image holds more than one comparable face: name one with face_index (the order "
                           "/detect lists them in) or face_box, or set all_faces", "face_index")
        if not force:
            for face in faces:
                quality = face.quality.score if face.quality else 0.0
                if face.size_px < self.options.min_face_px:
                    raise NoFace(f"face too small ({face.size_px:.0f} px, at least {self.options.min_face_px:.0f}); "
                                 "set force to enrol it anyway")
                if quality < self.options.min_quality:
                    raise NoFace(f"face quality {quality:.2f} is under {self.options.min_quality} "
                                 "(blurred, turned away or small); set force to enrol it anyway", "file")
        key = await asyncio.to_thread(self.images.put, data) if self.options.save_images else None
        digest = await asyncio.to_thread(photo_hash, data)  # up to 10 MB: not on the event loop
        now = time.time()
        records = []
        for face in faces:
            if face.embedding is None or face.kps is None:
                raise NoFace("face could not be embedded")
            records.append(FaceRecord(
                uuid.uuid4().hex, subject.pk, gallery.id, [round(float(v), 1) for v in face.box],
                [[round(float(x), 1), round(float(y), 1)] for x, y in face.kps], face.det_score,
                face.quality.score if face.quality else 0.0, face.embedding, self.analyzer.embedder.model_id,
                digest, key, now))
        thumbs = await asyncio.to_thread(lambda: [thumbnail_jpeg(f.aligned) if f.aligned is not None else None
                                                  for f in faces])
        await self._commit_faces(gallery, subject, records, thumbs, job_item)
        return records

    async def add_embedded_faces(self, gallery: Gallery, subject: Subject,
                                 faces: Sequence[EmbeddedFace]) -> list[FaceRecord]:
        """Enrol faces whose embeddings exist already; all in one transaction."""
        model_id = self.analyzer.embedder.model_id
        if any(f.model_id != model_id for f in faces):
            raise BadParam(f"faces embedded by another model than {model_id!r} cannot be enrolled", "faces")
        if not faces:
            raise NoFace("no faces to enrol")
        now = time.time()
        keys = [await asyncio.to_thread(self.images.put, f.image) if self.options.save_images and f.image else None
                for f in faces]
        records = [FaceRecord(uuid.uuid4().hex, subject.pk, gallery.id, [], [], 1.0, f.quality,
                              np.asarray(f.embedding, np.float32), model_id,
                              photo_hash(f.image or f.embedding.tobytes()), key, now)
                   for f, key in zip(faces, keys)]
        await self._commit_faces(gallery, subject, records, [f.image for f in faces])
        return records

    async def _commit_faces(self, gallery: Gallery, subject: Subject, records: list[FaceRecord],
                            thumbnails: list[bytes | None], job_item: str | None = None) -> None:
        """Rows in one transaction (image files removed again if it fails), then index and events."""
        try:
            versions = await asyncio.to_thread(self.store.add_faces, records, thumbnails, job_item)
        except BaseException:
            for key in {r.image_key for r in records if r.image_key is not None}:
                await self._drop_image(key)
            raise
        for record, version in zip(records, versions):
            self._event(FaceAdded, gallery, version, subject=subject.id, subject_pk=subject.pk, face_id=record.id,
                        embedding=encode_vector(record.embedding), model_id=record.model_id)
        await self._indexed(gallery.id, versions[-1])

    async def replace_embeddings(self, records: Sequence[FaceRecord], vectors: Sequence[np.ndarray]) -> int:
        """Faces re-embedded by the current model (repo/reembed.py): stored in one transaction,
        then indexed and announced like new faces; returns how many were stored."""
        model_id = self.analyzer.embedder.model_id
        by_id = {r.id: (r, np.asarray(v, np.float32)) for r, v in zip(records, vectors)}
        stored = await asyncio.to_thread(self.store.replace_embeddings, {i: v for i, (_, v) in by_id.items()}, model_id)
        if not stored:
            return 0
        galleries = {g.id: g for g in await asyncio.to_thread(self.store.all_galleries)}
        subjects = await asyncio.to_thread(self.store.subjects_by_pk, list({pk for pk, _, _ in stored.values()}))
        # Each face's subject and gallery as the write found them: a merge may have moved it since it was read.
        for face_id, (subject_pk, gallery_id, version) in stored.items():
            _, vector = by_id[face_id]
            gallery = galleries.get(gallery_id) or Gallery(gallery_id, "", "", 0.0)  # deleted since: still announced
            subject = subjects.get(subject_pk)
            # Every version is announced, or the other nodes would wait for it in vain.
            self._event(FaceAdded, gallery, version, subject=subject.id if subject else None, subject_pk=subject_pk,
                        face_id=face_id, embedding=encode_vector(vector), model_id=model_id)
        return len(stored)

    async def delete_face(self, tenant_id: str, face_id: str) -> None:
        record, gallery = await asyncio.to_thread(self.store.face, tenant_id, face_id)
        version = await asyncio.to_thread(self.store.delete_face, face_id)
        await self._drop_image(record.image_key)
        if version is not None:  # else another request deleted it meanwhile, and announced it
            self._event(FaceRemoved, gallery, version, face_id=face_id)
            await self._indexed(gallery.id, version)

    async def add_negative(self, gallery: Gallery, subject: Subject, data: bytes, *, source: str,
                           choice: FaceChoice | None = None, force: bool = False) -> tuple[NegativeRecord, float]:
        """"This face is not ``subject``": stores the face as a negative example of it.

        Returns the record and the face's similarity to the subject's nearest
        face (how close the mistake was). The face must pass the matching gate
        (quality.min_score) unless ``force``: an unrecognisable face says
        nothing about whom it is not.
        """
        embedding, face = await self.embedding_of(data, "file", choice)
        quality = face.quality.score if face.quality else 0.0
        gate = self.options.policy.min_quality  # the matching gate: what a probe must pass to be named at all
        if not force and quality < gate:
            raise NoFace(f"face quality {quality:.2f} is under {gate}: it says little about "
                         "whom it is not; set force to store it anyway", "file")
        own = await asyncio.to_thread(self.store.faces_of_subject, subject.pk)
        model_id = self.analyzer.embedder.model_id
        vectors = [f.embedding for f in own if f.model_id == model_id]
        closeness = float(np.max(np.stack(vectors) @ embedding)) if vectors else -1.0
        record = NegativeRecord(uuid.uuid4().hex, subject.pk, gallery.id, embedding, model_id, source, time.time())
        thumb = await asyncio.to_thread(thumbnail_jpeg, face.aligned) if face.aligned is not None else None
        version = await asyncio.to_thread(self.store.add_negative, record, thumb)
        self._event(NegativeAdded, gallery, version, subject=subject.id, subject_pk=subject.pk,
                    negative_id=record.id, model_id=model_id,
                    embedding=encode_vector(embedding))
        await self._indexed(gallery.id, version)
        return record, closeness

    async def delete_negative(self, tenant_id: str, negative_id: str) -> None:
        record, gallery = await asyncio.to_thread(self.store.negative, tenant_id, negative_id)
        version = await asyncio.to_thread(self.store.delete_negative, record.id)
        if version is not None:
            self._event(NegativeRemoved, gallery, version, negative_id=record.id, subject_pk=record.subject_pk)
            await self._indexed(gallery.id, version)

    async def _drop_image(self, key: str | None) -> None:
        if key is not None and not await asyncio.to_thread(self.store.image_key_in_use, key):
            await asyncio.to_thread(self.images.delete, key)

    async def delete_subject(self, gallery: Gallery, subject: Subject) -> None:
        gone, version = await asyncio.to_thread(self.store.delete_subject, subject)
        self._event(SubjectRemoved, gallery, version, subject=subject.id, subject_pk=subject.pk,
                    face_ids=[f for f, _ in gone])
        for key in {k for _, k in gone}:
            await self._drop_image(key)
        await self._indexed(gallery.id, version)

    async def update_subject(self, gallery: Gallery, subject: Subject, name: str | None,
                             meta: dict[str, Any] | None) -> Subject:
        change = await asyncio.to_thread(self.store.update_subject, subject, name, meta)
        result = change.subject
        if change.merged_pk is not None and change.version is not None:
            self._event(SubjectMerged, gallery, change.version, subject=result.id, merged=subject.id,
                        subject_pk=result.pk, merged_pk=change.merged_pk, face_ids=list(change.moved_faces))
            await self._indexed(gallery.id, change.version)
        else:
            self._event(SubjectUpdated, gallery, subject=result.id)  # nothing an index follows
        return result

    async def rename_gallery(self, gallery: Gallery, name: str) -> Gallery:
        """Cameras name their galleries: the event lets watchers follow the new name."""
        if name == gallery.name:
            return gallery
        renamed = await asyncio.to_thread(self.store.rename_gallery, gallery, name)
        self._event(GalleryRenamed, renamed, renamed.version, old_name=gallery.name)
        return renamed

    async def delete_gallery(self, gallery: Gallery) -> None:
        keys, version = await asyncio.to_thread(self.store.delete_gallery, gallery)
        self._event(GalleryRemoved, gallery, version)
        for key in set(keys):
            await self._drop_image(key)

    # -- search ----------------------------------------------------------------------
    async def identify(self, tenant_id: str, gallery_names: list[str], image: bytes | np.ndarray, *,
                       prediction_count: int,
                       limit: int, det_prob_threshold: float, policy: Policy) -> list[Identification]:
        galleries = [await asyncio.to_thread(self.store.gallery, tenant_id, name) for name in gallery_names]
        faces = await self.analyze(image, max_faces=limit or None)
        faces = [f for f in faces if f.det_score >= det_prob_threshold]
        comparisons = sum(len(self._index(g.id)) for g in galleries)
        results = []
        for face in faces:
            found: list[tuple[Match, Gallery]] = []
            if face.embedding is not None:
                for gallery in galleries:
                    found += [(m, gallery) for m in self._index(gallery.id).search(
                        face.embedding, max(CANDIDATES, prediction_count))]
            found.sort(key=lambda mg: -mg[0].similarity)
            decision = decide([Candidate(m.face_id, m.similarity, self._negatives(g.id).nearest(m.subject_pk,
                                                                                            face.embedding))
                               for m, g in found[:CANDIDATES]], policy,
                              self.options.calibration, quality=face.quality.score if face.quality else 0.0,
                              comparisons=comparisons) if face.embedding is not None else \
                Decision(None, None, None, 1.0, 0.0, "no_candidates")
            # Every candidate weighed is named in the answer, however few the caller asked to see.
            listed = found[:max(CANDIDATES, prediction_count)]
            subjects = await asyncio.to_thread(self.store.subjects_by_pk, [m.subject_pk for m, _ in listed])
            results.append(Identification(face, [(m, subjects[m.subject_pk], g) for m, g in listed
                                                 if m.subject_pk in subjects], decision))
        return results

    async def embedding_of(self, data: bytes, param: str, choice: FaceChoice | None = None) -> tuple[np.ndarray, Face]:
        """The embedding of the face ``choice`` names, else of the most prominent face."""
        faces = await self.analyze(data, param=param, max_faces=1, choice=choice)
        if not faces or faces[0].embedding is None:
            raise NoFace(f"no face found in {param}", param)
        return faces[0].embedding, faces[0]

    async def subject_embeddings(self, subject: Subject) -> np.ndarray:
        faces = await asyncio.to_thread(self.store.faces_of_subject, subject.pk)
        if not faces:
            raise NotFound(f"subject {subject.id!r} has no faces", "subject")
        current = [f.embedding for f in faces if f.model_id == self.analyzer.embedder.model_id]
        if not current:
            raise Conflict(f"the faces of subject {subject.id!r} are waiting to be re-embedded by the current model",
                           "subject")
        return np.stack(current)

    def face_embedding(self, record: FaceRecord) -> np.ndarray:
        """A stored face's embedding, if the current model made it."""
        if record.model_id != self.analyzer.embedder.model_id:
            raise Conflict(f"face {record.id!r} is waiting to be re-embedded by the current model", "face_id")
        return record.embedding

    # -- what the API reads (and creates: a new gallery or subject announces nothing) ----------------
    async def list_galleries(self, tenant_id: str) -> list[tuple[Gallery, int, int]]:
        """The tenant's galleries with their subject and face counts."""
        return await asyncio.to_thread(self.store.list_galleries, tenant_id)

    async def gallery(self, tenant_id: str, name: str) -> Gallery:
        return await asyncio.to_thread(self.store.gallery, tenant_id, name)

    async def create_gallery(self, tenant_id: str, name: str) -> Gallery:
        return await asyncio.to_thread(self.store.create_gallery, tenant_id, name)

    async def list_subjects(self, gallery: Gallery, offset: int, limit: int) -> tuple[list[Subject], int]:
        """A page of the gallery's subjects and how many it has."""
        return await asyncio.to_thread(self.store.list_subjects, gallery.id, offset, limit)

    async def subject(self, gallery: Gallery, subject_id: str) -> Subject:
        return await asyncio.to_thread(self.store.subject, gallery.id, subject_id)

    async def create_subject(self, gallery: Gallery, subject_id: str, name: str, meta: dict[str, Any]) -> Subject:
        return await asyncio.to_thread(self.store.create_subject, gallery.id, subject_id, name, meta)

    async def faces_of_subject(self, subject: Subject) -> list[FaceRecord]:
        return await asyncio.to_thread(self.store.faces_of_subject, subject.pk)

    async def negatives_of_subject(self, subject: Subject) -> list[NegativeRecord]:
        return await asyncio.to_thread(self.store.negatives_of_subject, subject.pk)

    async def face(self, tenant_id: str, face_id: str) -> tuple[FaceRecord, Gallery]:
        return await asyncio.to_thread(self.store.face, tenant_id, face_id)

    async def subject_of_face(self, record: FaceRecord) -> Subject:
        return (await asyncio.to_thread(self.store.subjects_by_pk, [record.subject_pk]))[record.subject_pk]

    async def face_image(self, tenant_id: str, face_id: str) -> bytes | None:
        """The original image the face was enrolled from; None when it was not kept."""
        record, _ = await self.face(tenant_id, face_id)
        return await asyncio.to_thread(self.images.get, record.image_key) if record.image_key else None

    async def face_thumbnail(self, tenant_id: str, face_id: str) -> bytes | None:
        record, _ = await self.face(tenant_id, face_id)
        return await asyncio.to_thread(self.store.face_thumbnail, record.id)
