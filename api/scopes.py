"""What a credential may do: the scope of an API key.

``full``: everything its tenant may do. ``read``: routes that change nothing (and the tenant's topics).
``subscribe``: no API at all; on the broker, only the topics of the cameras it names: a key to put in a
browser or on a wall display. Client-credential tokens are always ``full``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, cast

from .errors import BadParam
from .names import CAMERA_ID

__all__ = ("ScopeKind", "KeyScope", "FULL", "SCOPE_KINDS")

ScopeKind = Literal["full", "read", "subscribe"]
SCOPE_KINDS: tuple[ScopeKind, ...] = ("full", "read", "subscribe")


@dataclass(slots=True, frozen=True)
class KeyScope:
    kind: ScopeKind = "full"
    cameras: tuple[str, ...] = ()  # subscribe: the cameras whose topics it may read

    def allows_route(self, writes: bool) -> bool:
        return self.kind == "full" or (self.kind == "read" and not writes)

    @property
    def may_call_api(self) -> bool:
        return self.kind != "subscribe"

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "cameras": list(self.cameras)} if self.kind == "subscribe" else {"kind": self.kind}

    def dumps(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> "KeyScope":
        """From the database (keys made before scopes existed have none: full)."""
        return cls.parse(json.loads(text)) if text else FULL

    @classmethod
    def parse(cls, data: object) -> "KeyScope":
        """From a request body or the CLI; BadParam when it is not a scope."""
        if isinstance(data, str):
            data = {"kind": data}
        if not isinstance(data, dict) or data.get("kind") not in SCOPE_KINDS:
            raise BadParam(f"scope must be one of {', '.join(SCOPE_KINDS)} (or {{\"kind\": ..., \"cameras\": [...]}})",
                           "scope")
        kind = cast(ScopeKind, data["kind"])
        cameras = data.get("cameras", [])
        if not isinstance(cameras, list) or not all(isinstance(c, str) and CAMERA_ID.match(c) for c in cameras):
            raise BadParam("cameras must be a list of camera ids", "cameras")
        if kind == "subscribe" and not cameras:
            raise BadParam("a subscribe key names the cameras it may read", "cameras")
        if kind != "subscribe" and cameras:
            raise BadParam("only a subscribe key names cameras", "cameras")
        if len(cameras) > 256:
            raise BadParam("at most 256 cameras", "cameras")
        return cls(kind, tuple(sorted(set(cameras))))


FULL = KeyScope("full")
