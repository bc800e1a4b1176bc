"""An event's one wire shape: a frozen dataclass <-> a JSON object (or msgpack map) with its ``type``.

pydantic reads the dataclasses as they are (no second schema): ``decode`` checks every field's type
(in pydantic's lax mode: "7" is read as 7 for an int; the contents of a ``dict[str, Any]`` field are not
checked), so a consumer gets a typed event or an ``EventError``, never half a dict. Fields an event does not declare are
ignored, so a newer node's events (one more field) still read on an older one.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Self, TypeVar, cast

import msgpack
import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError

__all__ = ("Event", "EventError", "JSON", "MSGPACK", "new_id", "encode_vector", "decode_vector")

JSON = "application/json"
MSGPACK = "application/msgpack"

E = TypeVar("E", bound="Event")


class EventError(ValueError):
    """A message that is not an event of the vocabulary (unknown type, missing or mistyped field)."""


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has: its ``type`` (per class), an ``id`` consumers deduplicate redeliveries by, and
    the wall-clock ``time`` it was made."""

    TYPE: ClassVar[str] = ""
    # NaN and infinities are not numbers a consumer can order, store or compare (a NaN time would make
    # the sightings writer's batch fail on every retry); they are refused like any mistyped field.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(allow_inf_nan=False)

    id: str = field(default_factory=new_id)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``type`` first); every declared field is present, ``null`` when unset."""
        return {"type": self.TYPE, **_adapter(_key(type(self))).dump_python(self, mode="json")}

    def for_tenant(self) -> Self:
        """The copy a tenant's own topic gets: repo and grouping events leave their embeddings out; a
        camera's face events keep theirs (the tenant's own cameras' faces, as on the camera's topic)."""
        return self

    def encode(self, content_type: str = JSON) -> bytes:
        if content_type == MSGPACK:
            return bytes(msgpack.packb(self.to_json()))
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls: type[E], data: Any) -> E:
        """This class's event from its JSON object (``type`` is not checked here: ``decode`` dispatches on it)."""
        # The defaults make a new event's id and time; a received one without them would get a new id
        # at each delivery (deduplication defeated) and the time it was read.
        if isinstance(data, Mapping):
            for name in ("id", "time"):
                if name not in data:
                    raise EventError(f"{cls.TYPE or cls.__name__}: {name}: Field required")
        try:
            event: E = _adapter(_key(cls)).validate_python(data)
            return event
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            raise EventError(f"{cls.TYPE or cls.__name__}: {where}: {first['msg']}") from None


def _key(cls: type[Any]) -> Hashable:
    return cast(Hashable, cls)  # a class is hashable; mypy reads a dataclass's __hash__ = None as not


@cache
def _adapter(cls: Hashable) -> TypeAdapter[Any]:
    return TypeAdapter(cast(type[Any], cls))


def encode_vector(vector: np.ndarray) -> str:
    """An embedding as events carry it: float32 bytes, base64."""
    return base64.b64encode(np.asarray(vector, np.float32).tobytes()).decode()


def decode_vector(text: str | None) -> np.ndarray | None:
    """The embedding back; None when absent, malformed, empty or not finite."""
    if not text:
        return None
    try:
        vector = np.frombuffer(base64.b64decode(text, validate=True), np.float32)
    except (binascii.Error, ValueError):
        return None
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        return None
    return vector
