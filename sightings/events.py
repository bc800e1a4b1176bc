"""Watcher events, read: the one place sightings parse an event dict (face.recognized,
face.unknown, track.ended; watcher/pipeline.py writes them)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np

from .records import NewSighting, SubjectRef, TrackEnd

__all__ = ("parse_event", "sighting_of", "track_end_of")


def parse_event(body: bytes) -> NewSighting | TrackEnd | None:
    """A queued message body; None for what is not a sighting (or is malformed)."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    if event.get("type") == "track.ended":
        return track_end_of(event)
    return sighting_of(event)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _subject(value: Any) -> SubjectRef | None:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("gallery"), str):
        return None
    pk = value.get("pk")
    return SubjectRef(pk[:64] if isinstance(pk, str) else None, value["id"][:200], str(value.get("name", ""))[:300],
                      value["gallery"][:200])


def _candidate(value: Any) -> tuple[SubjectRef | None, float | None]:
    if not isinstance(value, dict):
        return None, None
    return _subject(value.get("subject")), _number(value.get("similarity"))


def sighting_of(event: dict[str, Any]) -> NewSighting | None:
    kind = {"face.recognized": "recognized", "face.unknown": "unknown"}.get(str(event.get("type")))
    if kind is None:
        return None
    try:
        event_id, camera = event["id"], event["camera"]
        if not isinstance(event_id, str) or not isinstance(camera, str) or not event_id or not camera:
            return None
        seen_at = _number(event["frame"]["wall_time"])
        first_seen = _number(event.get("first_seen"))
        decided = _number(event.get("analysed_frame_time"))
        track = int(event["track"])
        if seen_at is None:
            return None
        embedding = None
        if isinstance(event.get("embedding"), str):
            embedding = np.frombuffer(base64.b64decode(event["embedding"], validate=True), np.float32)
            if embedding.size == 0 or not np.all(np.isfinite(embedding)):
                embedding = None
        crop = base64.b64decode(event["crop"], validate=True) if isinstance(event.get("crop"), str) else None
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    found = event.get("decision")
    decision: dict[str, Any] = found if isinstance(found, dict) else {}
    subject = _subject(event.get("subject")) if kind == "recognized" else None
    if kind == "recognized" and subject is None:
        return None
    if kind == "recognized":
        similarity = _number(event.get("similarity"))
        runner_up, runner_up_similarity = _candidate(decision.get("runner_up"))
    else:  # who it looked most like, though not enough to be named
        similarity = _number(event.get("best_similarity"))
        runner_up, runner_up_similarity = _candidate(decision.get("best"))
    model_id = event.get("model_id")
    return NewSighting(
        event_id=event_id[:64], kind=kind, camera=camera[:64], track=track,
        first_seen=first_seen if first_seen is not None else seen_at,
        last_seen=max(seen_at, decided if decided is not None else seen_at), seen_at=seen_at, subject=subject,
        similarity=similarity, runner_up=runner_up, runner_up_similarity=runner_up_similarity,
        threshold=_number(decision.get("threshold", event.get("threshold"))),
        margin=_number(decision.get("margin", event.get("margin"))),
        reason=str(decision["reason"])[:32] if "reason" in decision else None,
        quality=_number(event.get("quality")) or 0.0, embedding=embedding,
        model_id=model_id[:200] if isinstance(model_id, str) else None, crop=crop or None)


def track_end_of(event: dict[str, Any]) -> TrackEnd | None:
    try:
        camera, track = event["camera"], int(event["track"])
        first_seen, last_seen = _number(event["first_seen"]), _number(event["last_seen"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(camera, str) or first_seen is None or last_seen is None:
        return None
    return TrackEnd(camera[:64], track, first_seen, last_seen)
