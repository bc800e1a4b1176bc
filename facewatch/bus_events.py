"""Bus messages read as events of the vocabulary (events/), for the server's own subscriptions."""

from __future__ import annotations

import logging
from typing import TypeVar

from broker.client import BusMessage
from events import JSON, Event, EventError, decode_as

__all__ = ("event_of",)

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


def event_of(message: BusMessage, cls: type[E]) -> E | None:
    """The event of ``cls`` a message holds; None for another event (not read further) and, logged, for
    what is not an event at all."""
    try:
        return decode_as(message.body, cls, message.headers.get("content-type", JSON))
    except EventError as exc:
        log.warning("ignored a message on %s: %s", message.destination, exc)
        return None
