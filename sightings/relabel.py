"""Retroactive naming: when a subject gets faces (enrolled, or a face group promoted), the earlier
unknown sightings the cameras would now name as that subject are named, by the rule the cameras
use (repo/decision.py), and ``sightings.relabelled`` says how many.

A sighting is weighed as its camera weighs a face: against the camera's
galleries (today's settings; a camera that does not watch the subject's gallery
would never have named it, and a removed camera's sightings are left alone),
with the camera's threshold, the sighting's quality and embedding (the track's
combined shots), the subject's best face against the runner-up's, and the
subject's negatives. Candidates come from the sightings index: every sighting
at least as close to one of the subject's faces as the lowest threshold any of
those cameras could apply.

Each pass is a new question for every stored sighting, at the camera's full rate: it is not within the
camera's per-track bound (watcher/evidence.py); docs/sightings.md says what it adds up to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError, NotFound
from events import Event, FaceAdded, GroupPromoted, SightingsRelabelled
from repo.decision import CANDIDATES, Candidate as DecisionCandidate, decide
from repo.events import EventPublisher, tenant_topic
from repo.store import Gallery, Subject

from .records import SubjectRef
from .service import SIGHTINGS_KIND, SightingService
from .store import Candidate, Relabel

__all__ = ("CameraView", "CameraViews", "RelabelOptions", "Relabeller")

log = logging.getLogger(__name__)

_QUALITIES = tuple(q / 10 for q in range(11))  # where the lowest threshold of a rate policy is looked for


@dataclass(slots=True, frozen=True)
class CameraView:
    """What retroactive naming needs of a camera's settings."""

    galleries: tuple[str, ...]
    threshold: Any  # the camera's threshold setting (None: the configured default)


CameraViews = Callable[[str], dict[str, CameraView]]  # tenant -> its cameras by id (blocking: run in a thread)


@dataclass(slots=True, frozen=True)
class RelabelOptions:
    delay_s: float = 2.0  # a burst of enrolments (a promotion, a bulk job) makes one pass per subject
    max_candidates: int = 10_000  # nearest sightings weighed per face of the subject


@dataclass(slots=True)
class _Request:
    gallery: str
    trigger: str  # enrolled | promoted
    group: str | None
    due: float


class Relabeller:
    def __init__(self, service: SightingService, cameras: CameraViews, events: EventPublisher,
                 options: RelabelOptions = RelabelOptions()) -> None:
        self.service = service
        self.cameras = cameras
        self.events = events
        self.options = options
        self._pending: dict[tuple[str, str], _Request] = {}  # (tenant, subject pk) -> request
        self._wake = asyncio.Event()

    def request(self, tenant_id: str, gallery: str, subject_pk: str, trigger: str = "enrolled",
                group: str | None = None) -> None:
        """Ask for a pass over ``subject_pk``'s possible sightings a moment from now (on the event loop)."""
        key = (tenant_id, subject_pk)
        due = asyncio.get_running_loop().time() + self.options.delay_s
        known = self._pending.get(key)
        if known is not None and known.trigger == "promoted":
            trigger, group = known.trigger, known.group  # the promotion's own faces arrive as enrolments
        self._pending[key] = _Request(gallery, trigger, group, due)
        self._wake.set()

    async def on_repo_event(self, event: Event) -> None:
        if isinstance(event, FaceAdded) and event.model_id == self.service.model_id:
            self.request(event.tenant, event.gallery, event.subject_pk)

    async def on_grouping_event(self, event: Event) -> None:
        if not isinstance(event, GroupPromoted):
            return
        try:
            pk = await self.service.subject_pk(event.tenant, event.gallery, event.subject)
        except NotFound:
            return
        self.request(event.tenant, event.gallery, pk, "promoted", event.group)

    async def run(self) -> None:
        """Serve the requests as they fall due, one at a time (runs until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                continue
            key, request = min(self._pending.items(), key=lambda kv: kv[1].due)
            wait = request.due - loop.time()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            del self._pending[key]
            try:
                await self.relabel(key[0], request.gallery, key[1], request.trigger, request.group)
            except Exception:
                log.exception("retroactive naming of subject %s failed", key[1])

    async def relabel(self, tenant_id: str, gallery_name: str, subject_pk: str, trigger: str = "enrolled",
                      group: str | None = None) -> list[str]:
        """Name the unknown sightings the cameras would name ``subject_pk`` now; returns their ids."""
        repo = self.service.repo
        try:
            gallery = await repo.gallery(tenant_id, gallery_name)
        except NotFound:
            return []
        subject = (await asyncio.to_thread(repo.store.subjects_by_pk, [subject_pk])).get(subject_pk)
        if subject is None or subject.gallery_id != gallery.id:
            return []
        faces = [f.embedding for f in await repo.faces_of_subject(subject) if f.model_id == self.service.model_id]
        cameras = {camera: view for camera, view in (await asyncio.to_thread(self.cameras, tenant_id)).items()
                   if gallery.name in view.galleries}
        if not faces or not cameras:
            return []
        policies = {camera: repo.policy(view.threshold) for camera, view in cameras.items()}
        lowest = min(repo.threshold_for(policy, quality, 1) for policy in policies.values() for quality in _QUALITIES)
        await asyncio.to_thread(self.service._refresh, tenant_id)
        near: set[str] = set()
        for face in faces:
            hits = await asyncio.to_thread(self.service.index.search, tenant_id, face, self.options.max_candidates,
                                           cameras=sorted(cameras), min_similarity=lowest)
            near.update(h.sighting_id for h in hits)
        candidates = await asyncio.to_thread(self.service.store.candidates, tenant_id, sorted(near),
                                             self.service.model_id)
        galleries: dict[str, Gallery] = {}
        for name in {name for view in cameras.values() for name in view.galleries}:
            try:
                galleries[name] = await repo.gallery(tenant_id, name)
            except ApiError:
                continue  # a camera may name a gallery that does not exist (yet)
        # Off the event loop: a decision searches every gallery of the camera, for each candidate.
        changes = await asyncio.to_thread(self._decide_all, subject, gallery, candidates, cameras, policies, galleries)
        named = await asyncio.to_thread(self.service.store.relabel, tenant_id, changes) if changes else []
        self.events.publish(tenant_topic(tenant_id, SIGHTINGS_KIND), SightingsRelabelled(
            tenant=tenant_id, gallery=gallery.name, subject=subject.id, trigger=trigger, group=group,
            count=len(named), sightings=named[:1000]))
        if named:
            log.info("retroactive naming: %d sighting(s) of tenant %s named %s", len(named), tenant_id, subject.id)
        return named

    def _decide_all(self, subject: Subject, gallery: Gallery, candidates: list[Candidate],
                    cameras: dict[str, CameraView], policies: dict[str, Any],
                    galleries: dict[str, Gallery]) -> list[Relabel]:
        changes = []
        for candidate in candidates:
            view = cameras[candidate.camera]
            change = self._decide(subject, gallery, candidate, [galleries[n] for n in view.galleries if n in galleries],
                                  policies[candidate.camera])
            if change is not None:
                changes.append(change)
        return changes

    def _decide(self, subject: Subject, gallery: Gallery, candidate: Candidate, galleries: list[Gallery],
                policy: Any) -> Relabel | None:
        """The camera's decision on the sighting, if it names ``subject`` (blocking)."""
        repo = self.service.repo
        weighed: list[tuple[DecisionCandidate, str]] = []
        comparisons = 0
        for found in galleries:
            index = repo.mirror.index(found.id)
            if not len(index):
                continue
            comparisons += len(index)
            negatives = repo.mirror.negatives(found.id)
            weighed += [(DecisionCandidate(m.subject_pk, m.similarity,
                                           negatives.nearest(m.subject_pk, candidate.embedding) if negatives else None),
                         found.name)
                        for m in index.search(candidate.embedding, CANDIDATES)]
        weighed.sort(key=lambda c: -c[0].similarity)
        weighed = weighed[:CANDIDATES]
        verdict = decide([c for c, _ in weighed], policy, repo.options.calibration, quality=candidate.quality,
                         comparisons=comparisons)
        if verdict.match is None or verdict.match.key != subject.pk:
            return None
        runner_up = None
        if verdict.runner_up is not None:
            pk = str(verdict.runner_up.key)
            other = repo.store.subjects_by_pk([pk]).get(pk)
            where = next(g for c, g in weighed if c is verdict.runner_up)
            runner_up = SubjectRef(pk, other.id, other.name, where) if other is not None else None
        return Relabel(candidate.id, SubjectRef(subject.pk, subject.id, subject.name, gallery.name),
                       verdict.match.similarity, runner_up,
                       verdict.runner_up.similarity if verdict.runner_up is not None else None,
                       verdict.threshold, verdict.margin)
