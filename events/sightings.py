"""Sightings' events, on the tenant's ``/topic/tenant.<id>.sightings``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import Event

__all__ = ("SightingStored", "SubjectErased", "SightingsRelabelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class SightingStored(Event):
    """A sighting stored, as GET /api/v1/sightings/{id} shows it (its ``seq`` is the tenant's cursor)."""

    TYPE = "sighting.stored"

    tenant: str
    sighting: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectErased(Event):
    """A subject erased everywhere; ``erasure`` is its audit record, ``counts`` what went."""

    TYPE = "subject.erased"

    tenant: str
    erasure: str
    counts: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class SightingsRelabelled(Event):
    """Earlier unknown sightings named after the fact, when ``subject`` was enrolled (``trigger``
    face.added) or promoted from ``group`` (group.promoted)."""

    TYPE = "sightings.relabelled"

    tenant: str
    gallery: str
    subject: str
    trigger: str
    group: str | None
    count: int
    sightings: list[str]  # their ids (the first 1,000)
