"""Bus messages read as events of the vocabulary (events/), for the server's own subscriptions."""

from __future__ import annotations

import logging

from broker.client import BusMessage
from events import JSON, Event, EventError, decode

__all__ = ("event_of",)

log = logging.getLogger(__name__)


def event_of(message: BusMessage) -> Event | None:
    """The event a message holds; None (logged) for what is not one."""
    try:
        return decode(message.body, message.headers.get("content-type", JSON))
    except EventError as exc:
        log.warning("ignored a message on %s: %s", message.destination, exc)
        return None
