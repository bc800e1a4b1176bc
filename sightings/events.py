"""Watcher events (events/camera.py) as the sightings writer stores them: face.recognized and
face.unknown become sightings, track.ended closes their time range."""

from __future__ import annotations

import base64
import binascii
import logging

from events import (
    CandidateRef, Event, EventError, FaceEvent, FaceRecognized, FaceUnknown, SubjectRef as EventSubject, TrackEnded,
    decode, decode_vector,
)

from .records import NewSighting, SubjectRef, TrackEnd

__all__ = ("parse_event", "sighting_of", "track_end_of")

log = logging.getLogger(__name__)


def parse_event(body: bytes) -> NewSighting | TrackEnd | None:
    """A queued message body; None for what is not a sighting (or is malformed)."""
    try:
        event: Event = decode(body)
    except EventError as exc:
        log.warning("sightings: not an event of the vocabulary: %s", exc)
        return None
    if isinstance(event, TrackEnded):
        return track_end_of(event)
    if isinstance(event, FaceEvent):
        return sighting_of(event)
    return None


def _subject(ref: EventSubject | None) -> SubjectRef | None:
    if ref is None:
        return None
    return SubjectRef(ref.pk[:64] if ref.pk else None, ref.id[:200], ref.name[:300], ref.gallery[:200])


def _candidate(ref: CandidateRef | None) -> tuple[SubjectRef | None, float | None]:
    return (None, None) if ref is None else (_subject(ref.subject), ref.similarity)


def sighting_of(event: FaceEvent) -> NewSighting | None:
    if not event.id or not event.camera:
        return None
    try:
        crop = base64.b64decode(event.crop, validate=True) if event.crop else None
    except (binascii.Error, ValueError):
        return None
    decision = event.decision
    seen_at = event.frame.wall_time
    if isinstance(event, FaceRecognized):
        kind, subject, similarity = "recognized", _subject(event.subject), event.similarity
        runner_up, runner_up_similarity = _candidate(decision.runner_up)
    elif isinstance(event, FaceUnknown):
        # Who it looked most like, though not enough to be named: the decision's closest subject and its
        # similarity, one pair (the event's best_similarity is the highest over all the track's decisions).
        kind, subject = "unknown", None
        runner_up, runner_up_similarity = _candidate(decision.best)
        similarity = event.best_similarity if runner_up_similarity is None else runner_up_similarity
    else:
        return None
    return NewSighting(
        event_id=event.id[:64], kind=kind, camera=event.camera[:64], track=event.track, first_seen=event.first_seen,
        last_seen=max(seen_at, event.analysed_frame_time), seen_at=seen_at, subject=subject,
        similarity=similarity, runner_up=runner_up, runner_up_similarity=runner_up_similarity,
        threshold=decision.threshold, margin=decision.margin, reason=decision.reason[:32], quality=event.quality,
        embedding=decode_vector(event.embedding), model_id=event.model_id[:200] or None, crop=crop or None)


def track_end_of(event: TrackEnded) -> TrackEnd:
    return TrackEnd(event.camera[:64], event.track, event.first_seen, event.last_seen)
