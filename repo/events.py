"""Change events on /topic/repo.events, so watchers keep their indexes current."""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ("EventPublisher", "NullPublisher", "REPO_EVENTS")

log = logging.getLogger(__name__)

REPO_EVENTS = "/topic/repo.events"


class EventPublisher(Protocol):
    def publish(self, destination: str, body: Any) -> None: ...


class NullPublisher:
    """For a repo without a broker (tests of the store, the CLI)."""

    def publish(self, destination: str, body: Any) -> None:
        log.debug("event not published (no broker): %s %s", destination,
                  body.get("type") if isinstance(body, dict) else "")
