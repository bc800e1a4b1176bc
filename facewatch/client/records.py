"""What the client's methods return: typed records read from the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import JobProgress

__all__ = ("Camera", "CameraStatus", "Job", "Gallery", "Subject", "Group", "Me", "FINISHED_JOB_STATES")

FINISHED_JOB_STATES = frozenset({"done", "failed", "cancelled"})


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(slots=True, frozen=True)
class CameraStatus:
    id: str
    state: str  # starting | running | reconnecting | restarting | failed | stopped | unknown
    enabled: bool
    node: str | None
    reason: str | None
    stats: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CameraStatus":
        return cls(str(data["id"]), str(data.get("state", "unknown")), bool(data.get("enabled", False)),
                   data.get("node"), data.get("reason"), dict(data.get("stats") or {}), data.get("worker"))


@dataclass(slots=True, frozen=True)
class Camera:
    id: str
    url: str
    enabled: bool
    galleries: tuple[str, ...]
    topic: str
    node: str | None
    settings: dict[str, Any]  # every setting (name, max_fps, threshold, loop, ...)
    status: CameraStatus | None = None  # in list and show answers

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Camera":
        skip = {"id", "enabled", "node", "topic", "status", "created_at", "updated_at"}
        status = data.get("status")
        return cls(str(data["id"]), str(data["url"]), bool(data["enabled"]), tuple(data.get("galleries") or ()),
                   str(data.get("topic", "")), data.get("node"), {k: v for k, v in data.items() if k not in skip},
                   CameraStatus.from_json(status) if isinstance(status, dict) else None)


@dataclass(slots=True, frozen=True)
class Job:
    id: str
    kind: str
    status: str  # queued | running | done | failed | cancelled
    done: int
    total: int
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job":
        return cls(str(data["id"]), str(data.get("kind", "")), str(data["status"]), int(data.get("done", 0)),
                   int(data.get("total", 0)), dict(data.get("result") or {}))

    @classmethod
    def of_progress(cls, event: JobProgress) -> "Job":
        """From its ``job.progress`` event (on /topic/jobs.<id>)."""
        return cls(event.job, event.kind, event.status, event.done, event.total, dict(event.result))


@dataclass(slots=True, frozen=True)
class Gallery:
    name: str
    subjects: int | None
    faces: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Gallery":
        return cls(str(data["name"]), data.get("subjects"), data.get("faces"))


@dataclass(slots=True, frozen=True)
class Subject:
    id: str
    name: str
    faces: int
    meta: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Subject":
        return cls(str(data["id"]), str(data.get("name", data["id"])), int(data.get("faces", 0)),
                   dict(data.get("meta") or {}))


@dataclass(slots=True, frozen=True)
class Group:
    id: str
    status: str
    face_count: int
    cameras: tuple[str, ...]
    subject: dict[str, str] | None
    first_seen: float | None
    last_seen: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Group":
        return cls(str(data["id"]), str(data["status"]), int(data.get("face_count", 0)),
                   tuple(data.get("cameras") or ()), data.get("subject"), _opt_float(data.get("first_seen")),
                   _opt_float(data.get("last_seen")))


@dataclass(slots=True, frozen=True)
class Me:
    tenant: str
    via: str
    scope: dict[str, Any]
    topics: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Me":
        return cls(str(data["tenant"]), str(data["via"]), dict(data.get("scope") or {}), dict(data.get("topics") or {}))
