"""A job's progress, on ``/topic/jobs.<job id>`` (readable by its tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import Event

__all__ = ("JobProgress", "job_topic")


def job_topic(job_id: str) -> str:
    return f"/topic/jobs.{job_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress(Event):
    """As GET /api/v1/jobs/{job} shows it: status (queued, running, done, failed, cancelled), items done
    of total, the result so far."""

    TYPE = "job.progress"

    job: str
    kind: str
    status: str
    done: int
    total: int
    result: dict[str, Any]
